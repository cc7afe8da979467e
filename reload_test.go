package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// reloadDeadline bounds how long a reload may take to show: the debounce
// plus a build, with a wide margin for a loaded machine (CI runs the whole
// suite with -race on 2 cores). A reload that never comes still fails.
const reloadDeadline = 20 * time.Second

// reloadConfig is a server whose rule "x" gives /x the action given.
func reloadConfig(upstream, action string) string {
	return baseSections + `
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
upstream:
  url: ` + upstream + `
policies:
  default: allow
  rules:
    - name: x
      paths: ["/x"]
      action: ` + action + `
`
}

func newUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	u := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("upstream"))
	}))
	t.Cleanup(u.Close)
	return u
}

// status GETs path through the proxy.
func status(t *testing.T, s *opsServer, path string, h map[string]string) int {
	t.Helper()
	resp, _ := do(t, "GET", "http://"+s.listen+path, nil, h)
	return resp.StatusCode
}

// waitStatus polls until path answers want.
func waitStatus(t *testing.T, s *opsServer, path string, want int) {
	t.Helper()
	waitFor(t, reloadDeadline, "GET "+path+" to answer "+http.StatusText(want), func() bool {
		return status(t, s, path, nil) == want
	})
}

// waitReloads polls /metrics until the reload counter of result is n.
func waitReloads(t *testing.T, s *opsServer, result string, n float64) {
	t.Helper()
	series := `stepgate_config_reloads_total{result="` + result + `"}`
	waitFor(t, reloadDeadline, series, func() bool { return metricValue(scrape(t, s.admin), series) == n })
}

// replaceFile writes text the way editors such as vim do: a new file,
// renamed over the old one (the old inode goes away).
func replaceFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestReloadValidEdit: an in-place write and an editor's rename-replace
// both apply, and each counts one success.
func TestReloadValidEdit(t *testing.T) {
	up := newUpstream(t)
	path := writeConfig(t, reloadConfig(up.URL, "allow"))
	s := startOps(t, path, noEnv)
	if got := status(t, s, "/x", nil); got != 200 {
		t.Fatalf("before: got %d; want 200", got)
	}
	if err := os.WriteFile(path, []byte(reloadConfig(up.URL, "deny")), 0o600); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, "/x", http.StatusForbidden)
	waitReloads(t, s, reloadSuccess, 1)

	replaceFile(t, path, reloadConfig(up.URL, "allow"))
	waitStatus(t, s, "/x", http.StatusOK)
	waitReloads(t, s, reloadSuccess, 2)
	if v := metricValue(scrape(t, s.admin), `stepgate_config_reloads_total{result="error"}`); v != 0 {
		t.Errorf("errors: got %v; want 0", v)
	}
}

// TestReloadInvalidKeepsOld: every kind of bad file leaves the old config
// serving, is logged with its errors and counted as an error.
func TestReloadInvalidKeepsOld(t *testing.T) {
	up := newUpstream(t)
	good := reloadConfig(up.URL, "deny")
	path := writeConfig(t, good)
	s := startOps(t, path, noEnv)
	tests := []struct {
		name, text string
		wantLog    []string // each must appear in the failure's errors
	}{
		{"bad yaml", good + "\n  : [oops\n", []string{"yaml"}},
		{"unknown key", strings.Replace(good, "policies:", "polices:", 1), []string{"polices", "unknown key", "did you mean policies?"}},
		{"failing policy test", good + `  tests:
    - request: "GET http://app/x"
      expect: allow
`, []string{"policies.tests[0]"}},
		{"rules emptied", baseSections + `
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
upstream:
  url: ` + up.URL + `
policies:
  default: allow
  rules: []
`, []string{"policies.rules: the new config has no rules"}},
		{"factors changed", good + "factors:\n  totp:\n    issuer: Other\n", []string{"factors: changed in the new config", "only on restart"}},
		{"two problems at once", strings.Replace(good, "action: deny", "action: nope", 1) + "bogus: 1\n", []string{`rule "x": action "nope": is not an action`, "bogus", "unknown key"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.logs.String())
			replaceFile(t, path, tc.text)
			waitReloads(t, s, reloadError, float64(i+1))
			if got := status(t, s, "/x", nil); got != http.StatusForbidden {
				t.Errorf("after a bad file: got %d; want the old config's 403", got)
			}
			// The error is counted before it is logged: poll for the line.
			var failure map[string]any
			waitFor(t, reloadDeadline, "the failure's log line", func() bool {
				for _, rec := range logRecords(t, s.logs.String()[before:]) {
					if strings.HasPrefix(rec["msg"].(string), "config reload failed") {
						failure = rec
					}
				}
				return failure != nil
			})
			errs, _ := failure["errors"].([]any)
			all := ""
			for _, e := range errs {
				all += e.(string) + "\n"
			}
			for _, w := range tc.wantLog {
				if !strings.Contains(all, w) {
					t.Errorf("logged errors %q lack %q", all, w)
				}
			}
			if failure["level"] != "ERROR" {
				t.Errorf("failure level: got %v; want ERROR", failure["level"])
			}
		})
	}
	if v := metricValue(scrape(t, s.admin), `stepgate_config_reloads_total{result="success"}`); v != 0 {
		t.Errorf("successes: got %v; want 0", v)
	}
	// A good file applies again afterwards.
	replaceFile(t, path, reloadConfig(up.URL, "allow"))
	waitStatus(t, s, "/x", http.StatusOK)
}

// TestReloadConfigMapSymlinkSwap simulates a Kubernetes ConfigMap volume:
// config.yaml -> ..data/config.yaml, ..data -> ..v1; kubelet updates by
// writing ..v2, pointing a new symlink at it and renaming that over ..data,
// then removing ..v1. Nothing writes to config.yaml itself.
func TestReloadConfigMapSymlinkSwap(t *testing.T) {
	up := newUpstream(t)
	dir := t.TempDir()
	writeVersion := func(name, text string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "config.yaml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..v1", reloadConfig(up.URL, "allow"))
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(t, os.Symlink(filepath.Join("..data", "config.yaml"), filepath.Join(dir, "config.yaml")))
	s := startOps(t, filepath.Join(dir, "config.yaml"), noEnv)
	if got := status(t, s, "/x", nil); got != 200 {
		t.Fatalf("before: got %d; want 200", got)
	}

	swap := func(version string) {
		tmp := filepath.Join(dir, "..data_tmp")
		must(t, os.Symlink(version, tmp))
		must(t, os.Rename(tmp, filepath.Join(dir, "..data")))
	}
	writeVersion("..v2", reloadConfig(up.URL, "deny"))
	swap("..v2")
	must(t, os.RemoveAll(filepath.Join(dir, "..v1")))
	waitStatus(t, s, "/x", http.StatusForbidden)

	// A second swap works too: the watch follows the new target.
	writeVersion("..v3", reloadConfig(up.URL, "allow"))
	swap("..v3")
	must(t, os.RemoveAll(filepath.Join(dir, "..v2")))
	waitStatus(t, s, "/x", http.StatusOK)
	waitReloads(t, s, reloadSuccess, 2)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// busyWriter calls write every 50ms until the test ends, as a log written
// next to config.yaml would, so that a watcher starved by the writes never
// applies the change, however long the test waits. It returns once the
// first write is done, and a func giving the number of writes so far.
func busyWriter(t *testing.T, write func(i int)) (writes func() int64) {
	t.Helper()
	stop, done := make(chan struct{}), make(chan struct{})
	started := make(chan struct{})
	var n atomic.Int64
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			write(i)
			n.Add(1)
			if i == 0 {
				close(started)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	<-started
	return n.Load
}

// waitApplied waits for /x to answer want and returns how long that took
// from start; it fails after reloadDeadline.
func waitApplied(t *testing.T, s *opsServer, want int, start time.Time) time.Duration {
	t.Helper()
	waitStatus(t, s, "/x", want)
	return time.Since(start)
}

// TestReloadBusyDirectory: another file in the config's directory written
// every 50ms (less than the debounce) does not starve a reload: only events
// that concern the config restart the debounce. A watcher that restarted it
// on every event would never apply the change while the writes go on, and
// they go on until the test ends: it times out.
func TestReloadBusyDirectory(t *testing.T) {
	up := newUpstream(t)
	path := writeConfig(t, reloadConfig(up.URL, "allow"))
	s := startOps(t, path, noEnv)
	logPath := filepath.Join(filepath.Dir(path), "stepgate.log")
	writes := busyWriter(t, func(i int) {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err == nil {
			fmt.Fprintf(f, "line %d\n", i)
			f.Close()
		}
	})
	start, before := time.Now(), writes()
	if err := os.WriteFile(path, []byte(reloadConfig(up.URL, "deny")), 0o600); err != nil {
		t.Fatal(err)
	}
	// No bound tighter than reloadDeadline: on a loaded machine the
	// debounce and the build may take seconds; starvation takes forever.
	took := waitApplied(t, s, http.StatusForbidden, start)
	t.Logf("applied %v after the edit (debounce %v) with a file written every 50ms next to it (%d writes meanwhile)",
		took, reloadDebounce, writes()-before)
	waitReloads(t, s, reloadSuccess, 1)
}

// TestReloadDebounceCapped: a config file rewritten every 50ms (each event
// would restart the debounce) is still read at most reloadMaxDelay after
// the first event, so the change applies while the writes go on.
func TestReloadDebounceCapped(t *testing.T) {
	up := newUpstream(t)
	path := writeConfig(t, reloadConfig(up.URL, "allow"))
	s := startOps(t, path, noEnv)
	text := reloadConfig(up.URL, "deny")
	start := time.Now()
	busyWriter(t, func(i int) {
		// Rename-replace, so that no read sees a half-written file.
		tmp := fmt.Sprintf("%s.%d.tmp", path, i)
		if os.WriteFile(tmp, []byte(text), 0o600) == nil {
			os.Rename(tmp, path)
		}
	})
	took := waitApplied(t, s, http.StatusForbidden, start)
	if took > reloadMaxDelay+2*time.Second {
		t.Errorf("reload applied %v after the first write; want at most about %v", took, reloadMaxDelay)
	}
	t.Logf("applied %v after the first of writes every 50ms", took)
}

// TestReloadTrigger: the trigger (SIGHUP in production) reloads even when
// the file did not change, picking up what else changed: here the
// environment's STEPGATE_POLICIES_DEFAULT.
func TestReloadTrigger(t *testing.T) {
	up := newUpstream(t)
	var mu sync.Mutex
	env := map[string]string{"STEPGATE_POLICIES_DEFAULT": "allow"}
	getenv := func(k string) string { mu.Lock(); defer mu.Unlock(); return env[k] }
	s := startOps(t, writeConfig(t, reloadConfig(up.URL, "deny")), getenv)
	if got := status(t, s, "/other", nil); got != 200 {
		t.Fatalf("before: got %d; want 200", got)
	}
	mu.Lock()
	env["STEPGATE_POLICIES_DEFAULT"] = "deny"
	mu.Unlock()
	s.trigger <- struct{}{}
	waitStatus(t, s, "/other", http.StatusForbidden)
	waitReloads(t, s, reloadSuccess, 1)
}

// TestReloadSIGHUP runs the real `stepgate serve` and sends the process a
// SIGHUP after rotating the access-token key in a *_file kept outside the
// config's directory (so no file event fires): only the signal applies it.
func TestReloadSIGHUP(t *testing.T) {
	up := newUpstream(t)
	oldKey := testHMACSecret
	newKey := "rotated-access-token-hmac-key-0123456789abcdef"
	keyFile := filepath.Join(t.TempDir(), "hmac")
	must(t, os.WriteFile(keyFile, []byte(oldKey), 0o600))
	s := startServe(t, `
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
upstream:
  url: `+up.URL+`
identity:
  login_url: ""
  jwt:
    hmac_secret_file: "`+keyFile+`"
second_factor:
  secret: "`+testSecret+`"
mail:
  driver: log
policies:
  rules:
    - name: app
      paths: ["/**"]
      action: authenticate
`)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(newKey))
	must(t, err)
	h := map[string]string{"Authorization": "Bearer " + tok}
	get := func() int {
		resp, _ := do(t, "GET", "http://"+s.listen+"/a", nil, h)
		return resp.StatusCode
	}
	if got := get(); got != http.StatusUnauthorized {
		t.Fatalf("token of the new key before the reload: got %d; want 401", got)
	}
	must(t, os.WriteFile(keyFile, []byte(newKey), 0o600))
	must(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	waitFor(t, reloadDeadline, "the rotated key to apply", func() bool { return get() == http.StatusOK })
}

// TestReloadRestartOnlyKept: a file that changes restart-only keys and a
// rule applies the rule, keeps the running values of the others, and warns
// naming them (never their values).
func TestReloadRestartOnlyKept(t *testing.T) {
	up := newUpstream(t)
	path := writeConfig(t, reloadConfig(up.URL, "allow"))
	s := startOps(t, path, noEnv)
	next := strings.Replace(reloadConfig(up.URL, "deny"), "listen: 127.0.0.1:0", "listen: 127.0.0.1:1", 1) + `
upstream:
  timeout: 7s
store:
  redis:
    password: "not-in-the-log-0123"
`
	// The second upstream: key would be a duplicate; merge it instead.
	next = strings.Replace(next, "upstream:\n  url: "+up.URL+"\n", "", 1)
	next = strings.Replace(next, "upstream:\n  timeout: 7s\n", "upstream:\n  url: "+up.URL+"\n  timeout: 7s\n", 1)
	replaceFile(t, path, next)
	waitStatus(t, s, "/x", http.StatusForbidden)
	// The new gate serves before the warning is written: poll for it.
	var warn map[string]any
	waitFor(t, reloadDeadline, "the restart-only warning", func() bool {
		for _, rec := range logRecords(t, s.logs.String()) {
			if strings.HasPrefix(rec["msg"].(string), "config reload: these keys only change on restart") {
				warn = rec
			}
		}
		return warn != nil
	})
	var keys []string
	for _, k := range warn["keys"].([]any) {
		keys = append(keys, k.(string))
	}
	if got, want := strings.Join(keys, ","), "server.listen,upstream.timeout,store.redis.password"; got != want {
		t.Errorf("restart-only keys: got %q; want %q", got, want)
	}
	if strings.Contains(s.logs.String(), "not-in-the-log-0123") {
		t.Errorf("the log shows a secret's value")
	}
}

// TestKeepRestartOnly checks the merge itself: running values win for
// restart-only keys, new values for the rest (mail.subject included).
func TestKeepRestartOnly(t *testing.T) {
	cur := &Config{}
	cur.Server.Listen, cur.Upstream.Timeout, cur.Mail.Driver, cur.Mail.Subject = "a:1", time.Second, "log", "old"
	next := &Config{}
	next.Server.Listen, next.Upstream.Timeout, next.Mail.Driver, next.Mail.Subject = "b:2", 2*time.Second, "smtp", "new"
	next.Upstream.URL = "http://new"
	changed := keepRestartOnly(cur, next)
	if got, want := strings.Join(changed, ","), "server.listen,upstream.timeout,mail.driver"; got != want {
		t.Errorf("changed: got %q; want %q", got, want)
	}
	if next.Server.Listen != "a:1" || next.Upstream.Timeout != time.Second || next.Mail.Driver != "log" {
		t.Errorf("restart-only values not kept: %+v %+v %+v", next.Server, next.Upstream, next.Mail)
	}
	if next.Mail.Subject != "new" || next.Upstream.URL != "http://new" {
		t.Errorf("reloadable values not applied: subject %q url %q", next.Mail.Subject, next.Upstream.URL)
	}
}
