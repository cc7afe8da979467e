package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
)

// reloadDebounce is how long the watcher waits after the last event that
// concerns the config file before it reads the file: editors and kubelet
// write in several steps (temporary file, rename, symlink swap, removal),
// and the file is read once they are done.
const reloadDebounce = 200 * time.Millisecond

// reloadMaxDelay caps the debounce: the file is read at most this long
// after the first event of a burst, however often events keep coming, so
// that a file rewritten without pause cannot starve reloads.
const reloadMaxDelay = time.Second

// Result label values of stepgate_config_reloads_total.
const (
	reloadSuccess = "success"
	reloadError   = "error"
)

// reloadMetrics are the collectors of config reloads (SPEC §10).
type reloadMetrics struct {
	// Reloads counts reload attempts whose file changed (or that a signal
	// forced), by result: success or error.
	Reloads *prometheus.CounterVec
	// LastSuccess is the unix time of the last config that was applied,
	// the start-up one included.
	LastSuccess prometheus.Gauge
}

// newReloadMetrics creates the collectors and registers them on reg (nil:
// not registered). Both results start at zero, so that an alert on
// increase(...{result="error"}) sees the series from the start.
func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stepgate_config_reloads_total",
			Help: "Config reloads by result (success or error); an error leaves the previous config serving.",
		}, []string{"result"}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stepgate_config_last_reload_success_timestamp_seconds",
			Help: "Unix time at which the serving config was loaded.",
		}),
	}
	m.Reloads.WithLabelValues(reloadSuccess)
	m.Reloads.WithLabelValues(reloadError)
	if reg != nil {
		reg.MustRegister(m.Reloads, m.LastSuccess)
	}
	return m
}

// reloader applies a changed config file to a running server (SPEC §10):
// parse, validate, run the policy tests, build a gate, and only then swap
// it in. Anything that fails leaves the serving config alone.
type reloader struct {
	path   string              // the config file as given on the command line
	getenv func(string) string // the environment, as at start-up
	shared *sharedParts
	live   *liveGate
	// level is the logger's level, which a reload may change; nil means
	// log.level is ignored on reload.
	level   *slog.LevelVar
	log     *slog.Logger
	metrics *reloadMetrics
	// debounce is the quiet time after file events; zero means
	// reloadDebounce.
	debounce time.Duration
	// maxDelay caps the wait after the first event; zero means
	// reloadMaxDelay.
	maxDelay time.Duration

	mu       sync.Mutex // one reload at a time
	seen     [sha256.Size]byte
	extraDir string // watched directory of the resolved file, when not the config's own

	// w watches the config's directory (nil: not watched); set by watch.
	w *fsnotify.Watcher
}

// errFactorsChanged refuses a reload that changes factors.*: the factor
// store, its keys and the relying party were built at start, and the policy
// is compiled against the enabled methods, so keeping the running values
// (as for restartOnly keys) would leave rules naming methods that do not run.
var errFactorsChanged = errors.New("factors: changed in the new config; the factor store, its keys and the enabled methods change only on restart (the running config keeps serving)")

// errNoRules refuses a config that lost all its rules.
var errNoRules = errors.New("policies.rules: the new config has no rules where the serving one has some; an emptied file is taken for a mistake (to serve without rules, restart)")

// remember records the content of the file the serving config came from,
// so that events that do not change it do not reload.
func (rl *reloader) remember() {
	if raw, err := readLimited(rl.path, maxConfigFile); err == nil {
		rl.mu.Lock()
		rl.seen = sha256.Sum256(raw)
		rl.mu.Unlock()
	}
}

// reload reloads the config file. Unless force is set (SIGHUP, which also
// picks up changed *_file secrets and environment-independent keys), a file
// whose content did not change since the last attempt is left alone.
func (rl *reloader) reload(reason string, force bool) error {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	raw, err := readLimited(rl.path, maxConfigFile)
	if err != nil {
		return rl.fail(reason, fmt.Errorf("read config: %w", err))
	}
	sum := sha256.Sum256(raw)
	if !force && sum == rl.seen {
		return nil
	}
	rl.seen = sum
	cur := rl.live.cur.Load()
	cfg, err := loadConfig(rl.path, rl.getenv)
	if err != nil {
		return rl.fail(reason, err)
	}
	if cur != nil && cur.cfg.policy.Len() > 0 && cfg.policy.Len() == 0 {
		return rl.fail(reason, errNoRules)
	}
	if cur != nil && !reflect.DeepEqual(cur.cfg.Factors, cfg.Factors) {
		return rl.fail(reason, errFactorsChanged)
	}
	var kept []string
	if cur != nil {
		kept = keepRestartOnly(cur.cfg, cfg)
	}
	h, err := buildGate(cfg, rl.shared)
	if err != nil {
		return rl.fail(reason, err)
	}
	rl.live.store(cfg, h)
	applyRuntime(cfg)
	if rl.level != nil {
		if l, err := parseLevel(cfg.Log.Level); err == nil {
			rl.level.Set(l)
		}
	}
	rl.metrics.Reloads.WithLabelValues(reloadSuccess).Inc()
	rl.metrics.LastSuccess.SetToCurrentTime()
	if len(kept) > 0 {
		rl.log.Warn("config reload: these keys only change on restart; their running values are kept",
			"reason", reason, "keys", kept)
	}
	rl.log.Info("config reloaded", "reason", reason, "rules", cfg.policy.Len(),
		"sha256", hex.EncodeToString(sum[:8]))
	logWarnings(rl.log, cfg)
	return nil
}

// fail logs every problem of a refused config and counts it.
func (rl *reloader) fail(reason string, err error) error {
	rl.metrics.Reloads.WithLabelValues(reloadError).Inc()
	var list []string
	var ce *ConfigError
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			list = append(list, p.String())
		}
	} else {
		list = []string{err.Error()}
	}
	rl.log.Error("config reload failed; the previous config keeps serving",
		"reason", reason, "file", rl.path, "errors", list)
	return err
}

// restartOnly are the keys whose values sharedParts or the listeners were
// built from. A reload keeps their running values (the new ones would be
// half applied otherwise) and says so.
var restartOnly = []string{
	"server.listen", "server.admin_listen", "server.read_timeout",
	"server.read_idle_timeout", "server.max_connections", "upstream.timeout",
	"store", "mail.driver", "mail.from", "mail.smtp", "mail.file", "log.format",
}

// keepRestartOnly copies the running values of restartOnly keys into next
// and returns the key paths whose values differed.
func keepRestartOnly(cur, next *Config) []string {
	var changed []string
	for _, key := range restartOnly {
		cv, nv := fieldByKey(cur, key), fieldByKey(next, key)
		if !reflect.DeepEqual(cv.Interface(), nv.Interface()) {
			diffKeys(cv, nv, key, &changed)
			nv.Set(cv)
		}
	}
	return changed
}

// fieldByKey finds the field of c at a dotted key path.
func fieldByKey(c *Config, key string) reflect.Value {
	v := reflect.ValueOf(c).Elem()
	for _, part := range strings.Split(key, ".") {
		t := v.Type()
		found := false
		for i := range t.NumField() {
			if t.Field(i).Tag.Get("mapstructure") == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			panic("no config key " + key)
		}
	}
	return v
}

// diffKeys names the leaf keys under key whose values differ. Values are
// never named: some are secrets.
func diffKeys(a, b reflect.Value, key string, out *[]string) {
	if a.Kind() == reflect.Struct && a.Type() != durationType {
		for i := range a.NumField() {
			tag := a.Type().Field(i).Tag.Get("mapstructure")
			if tag == "" {
				continue
			}
			diffKeys(a.Field(i), b.Field(i), key+"."+tag, out)
		}
		return
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*out = append(*out, key)
	}
}

// run reloads on every receive from trigger (SIGHUP) and on changes to the
// config file until ctx ends. It watches the file's directory, not the
// file: editors replace files by rename and Kubernetes swaps a ConfigMap's
// `..data` symlink, and either leaves a watch on the old inode blind.
//
// Only events that concern the config (see relevant) count: other files
// in the directory, such as a log written next to config.yaml, are
// ignored. A relevant event re-resolves the path and (re)starts the
// debounce; the file is read once events pause for the debounce, or at the
// latest maxDelay after the first event of the burst, and reloaded only if
// its content hash changed.
//
// watch must have been called first; run closes its watcher.
func (rl *reloader) run(ctx context.Context, trigger <-chan struct{}) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	w := rl.w
	if w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	debounce := rl.debounce
	if debounce == 0 {
		debounce = reloadDebounce
	}
	maxDelay := rl.maxDelay
	if maxDelay == 0 {
		maxDelay = reloadMaxDelay
	}
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	var fire <-chan time.Time
	var first time.Time // the first relevant event of the pending burst
	for {
		select {
		case <-ctx.Done():
			return
		case <-trigger:
			rl.reload("signal", true)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !rl.relevant(ev.Name) {
				continue
			}
			rl.rewatch(w)
			now := time.Now()
			if fire == nil {
				first = now
			}
			timer.Reset(min(debounce, first.Add(maxDelay).Sub(now)))
			fire = timer.C
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			rl.log.Warn("config file watch", "err", err)
		case <-fire:
			fire = nil
			rl.reload("file changed", false)
		}
	}
}

// watch starts watching the config's directory (and the directory its
// symlinks lead to) and records the file's content. serveWith calls it
// before it logs "stepgate started", so that an edit made once that line is
// out is always seen: were the watch set up later, in run's goroutine, an
// edit in between would raise no event, or be taken for the serving
// content, and never apply. A watch that cannot be set up is logged; SIGHUP
// still reloads.
func (rl *reloader) watch() {
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(filepath.Dir(rl.path))
	}
	if err != nil {
		rl.log.Warn("config file changes are not watched; reload with SIGHUP", "file", rl.path, "err", err)
		if w != nil {
			w.Close()
		}
	} else {
		rl.w = w
		rl.rewatch(w)
	}
	rl.remember()
}

// relevant reports whether an event on name can change what the config
// path reads: the path itself (written, replaced by rename, removed), the
// `..data` symlink next to it (a Kubernetes ConfigMap update swaps it), and
// the file the path currently resolves to (the target of a symlinked
// config, in the directory rewatch adds).
func (rl *reloader) relevant(name string) bool {
	abs, err := filepath.Abs(name)
	if err != nil {
		return true // deny on doubt: a spurious reload only rereads the file
	}
	own, err := filepath.Abs(rl.path)
	if err != nil {
		return true
	}
	if abs == own || abs == filepath.Join(filepath.Dir(own), "..data") {
		return true
	}
	resolved, err := filepath.EvalSymlinks(own)
	if err != nil {
		// Mid-swap: the path resolves to nothing, so the next relevant
		// event will come; this one cannot be placed.
		return false
	}
	resolved, err = filepath.Abs(resolved)
	return err == nil && abs == resolved
}

// rewatch also watches the directory the config path resolves to, when
// symlinks lead elsewhere, so that edits of the link's target are seen.
func (rl *reloader) rewatch(w *fsnotify.Watcher) {
	resolved, err := filepath.EvalSymlinks(rl.path)
	if err != nil {
		return // mid-swap; the next event tries again
	}
	dir, err := filepath.Abs(filepath.Dir(resolved))
	if err != nil || dir == rl.extraDir {
		return
	}
	if rl.extraDir != "" {
		w.Remove(rl.extraDir) // it may be gone already
		rl.extraDir = ""
	}
	own, err := filepath.Abs(filepath.Dir(rl.path))
	if err == nil {
		own, err = filepath.EvalSymlinks(own)
	}
	if err != nil || own == dir {
		return
	}
	if w.Add(dir) == nil {
		rl.extraDir = dir
	}
}
