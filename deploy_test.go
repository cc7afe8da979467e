package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// manifest is one YAML document of deploy/, with its file.
type manifest struct {
	file string
	doc  map[string]any
}

// readManifests parses every document of every YAML file under dir.
func readManifests(t *testing.T, dir string) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", dir, err)
	}
	var out []manifest
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if doc != nil {
				out = append(out, manifest{f, doc})
			}
		}
	}
	return out
}

// get walks a parsed document: string keys for maps, ints for lists.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// find returns the documents of kind named name.
func find(ms []manifest, kind, name string) map[string]any {
	for _, m := range ms {
		if m.doc["kind"] == kind && get(m.doc, "metadata", "name") == name {
			return m.doc
		}
	}
	return nil
}

// TestKubernetesManifests checks what matters in deploy/kubernetes: the
// Deployment's replicas, probes, security and mounts against the config the
// ConfigMap holds, the Secret's keys against that config's *_file paths,
// and that the config itself loads and validates.
func TestKubernetesManifests(t *testing.T) {
	ms := readManifests(t, "deploy/kubernetes")
	for _, m := range ms {
		if m.doc["apiVersion"] == nil || m.doc["kind"] == nil || get(m.doc, "metadata", "name") == nil {
			t.Errorf("%s: a document without apiVersion, kind or metadata.name", m.file)
		}
	}
	dep := find(ms, "Deployment", "stepgate")
	cm := find(ms, "ConfigMap", "stepgate-config")
	sec := find(ms, "Secret", "stepgate-secrets")
	if dep == nil || cm == nil || sec == nil {
		t.Fatalf("want Deployment stepgate, ConfigMap stepgate-config, Secret stepgate-secrets")
	}
	for _, want := range [][2]string{{"Service", "stepgate"}, {"StatefulSet", "stepgate-redis"}, {"Service", "stepgate-redis"}} {
		if find(ms, want[0], want[1]) == nil {
			t.Errorf("no %s %s", want[0], want[1])
		}
	}
	if r, _ := get(dep, "spec", "replicas").(int); r < 2 {
		t.Errorf("replicas: got %v; want >= 2", get(dep, "spec", "replicas"))
	}

	// The embedded config, loaded as serve would, secrets from the
	// environment (which overrides the *_file keys).
	text, _ := get(cm, "data", "config.yaml").(string)
	path := writeConfig(t, text)
	env := envMap(map[string]string{
		"STEPGATE_SECOND_FACTOR_SECRET":     testSecret,
		"STEPGATE_IDENTITY_JWT_HMAC_SECRET": testHMACSecret,
		"STEPGATE_MAIL_SMTP_PASSWORD":       "smtp-password",
		"STEPGATE_STORE_REDIS_PASSWORD":     "redis-password",
	})
	cfg, err := loadConfig(path, env)
	if err != nil {
		t.Fatalf("the ConfigMap's config.yaml does not load:\n%v", err)
	}
	if cfg.Store.Driver != "redis" || cfg.policy.Len() == 0 || len(cfg.Policies.Tests) == 0 {
		t.Errorf("config: store %q, %d rules, %d tests; want redis, rules and policy tests", cfg.Store.Driver, cfg.policy.Len(), len(cfg.Policies.Tests))
	}
	_, adminPort, _ := net.SplitHostPort(cfg.Server.AdminListen)
	_, proxyPort, _ := net.SplitHostPort(cfg.Server.Listen)
	if h, _, _ := net.SplitHostPort(cfg.Server.Listen); h != "0.0.0.0" {
		t.Errorf("server.listen %q: a pod must listen on all interfaces", cfg.Server.Listen)
	}

	// The file paths the config names, read from the file itself (the
	// environment above replaced them in cfg).
	var raw Config
	rawCfg, _ := load(writeConfig(t, text), noEnv)
	if rawCfg != nil {
		raw = *rawCfg
	}
	secretFiles := []string{raw.SecondFactor.SecretFile, raw.Identity.JWT.HMACSecretFile, raw.Mail.SMTP.PasswordFile, raw.Store.Redis.PasswordFile}

	spec := get(dep, "spec", "template", "spec")
	c := get(spec, "containers", 0)
	if get(spec, "securityContext", "runAsNonRoot") != true {
		t.Errorf("pod securityContext.runAsNonRoot: want true")
	}
	for k, want := range map[string]any{"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false} {
		if got := get(c, "securityContext", k); got != want {
			t.Errorf("container securityContext.%s: got %v; want %v", k, got, want)
		}
	}
	if get(c, "resources", "requests") == nil || get(c, "resources", "limits") == nil {
		t.Errorf("container resources: want requests and limits")
	}
	args, _ := get(c, "args").([]any)
	if !slices.Contains(args, any("/etc/stepgate/config.yaml")) {
		t.Errorf("args %v: want -config /etc/stepgate/config.yaml", args)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := get(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path: got %v; want %s", probe, got, path)
		}
		if got := get(c, probe, "httpGet", "port"); got != atoi(adminPort) {
			t.Errorf("%s port: got %v; want admin_listen's %s", probe, got, adminPort)
		}
	}
	ports := map[string]int{}
	for _, p := range get(c, "ports").([]any) {
		ports[get(p, "name").(string)] = get(p, "containerPort").(int)
	}
	if ports["http"] != atoi(proxyPort) || ports["admin"] != atoi(adminPort) {
		t.Errorf("container ports %v: want http %s and admin %s", ports, proxyPort, adminPort)
	}
	drain := cfg.Server.ShutdownDelay + cfg.Server.ShutdownGrace
	if tg, _ := get(spec, "terminationGracePeriodSeconds").(int); float64(tg) <= drain.Seconds() {
		t.Errorf("terminationGracePeriodSeconds %d: want more than server.shutdown_delay + shutdown_grace %v", tg, drain)
	}
	// SPEC §13: the pod must keep serving until the readiness probe has
	// seen /readyz fail, or new connections reach a pod that refuses them.
	period, _ := get(c, "readinessProbe", "periodSeconds").(int)
	failures, _ := get(c, "readinessProbe", "failureThreshold").(int)
	if period == 0 {
		period = 10 // Kubernetes' defaults
	}
	if failures == 0 {
		failures = 3
	}
	if notice := time.Duration(period*failures) * time.Second; cfg.Server.ShutdownDelay <= notice {
		t.Errorf("server.shutdown_delay %v: want more than the readiness probe takes to notice (%v = periodSeconds %d x failureThreshold %d)",
			cfg.Server.ShutdownDelay, notice, period, failures)
	}

	// Mounts: the ConfigMap as the directory of /etc/stepgate/config.yaml
	// (no subPath, so updates reach the pod), the Secret where the *_file
	// paths point, with a key for each.
	volumes := map[string]any{}
	for _, v := range get(spec, "volumes").([]any) {
		volumes[get(v, "name").(string)] = v
	}
	mounts := map[string]string{} // mount path => volume source kind
	for _, m := range get(c, "volumeMounts").([]any) {
		if get(m, "subPath") != nil {
			t.Errorf("volumeMount %v uses subPath: it would never see ConfigMap or Secret updates", m)
		}
		v := volumes[get(m, "name").(string)]
		switch {
		case get(v, "configMap", "name") == "stepgate-config":
			mounts[get(m, "mountPath").(string)] = "config"
		case get(v, "secret", "secretName") == "stepgate-secrets":
			mounts[get(m, "mountPath").(string)] = "secret"
		}
	}
	if mounts["/etc/stepgate"] != "config" {
		t.Errorf("mounts %v: want the ConfigMap at /etc/stepgate (so /etc/stepgate/config.yaml)", mounts)
	}
	keys := map[string]bool{}
	for _, field := range []string{"data", "stringData"} {
		if m, ok := sec[field].(map[string]any); ok {
			for k := range m {
				keys[k] = true
			}
		}
	}
	for _, f := range secretFiles {
		if f == "" {
			continue
		}
		dir, key := filepath.Dir(f), filepath.Base(f)
		if mounts[dir] != "secret" || !keys[key] {
			t.Errorf("secret file %s: want the Secret mounted at %s with key %q (mounts %v)", f, dir, key, mounts)
		}
	}
	if len(slices.DeleteFunc(secretFiles, func(s string) bool { return s == "" })) != 4 {
		t.Errorf("secret files %q: want all four secrets read from files", secretFiles)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestPrometheusRules parses the rule files and checks that every
// stepgate_ metric they use is one the server exports.
func TestPrometheusRules(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, baseSections+baseRules), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := newSharedParts(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.store.Close()
	// Vectors export nothing until a child exists.
	shared.proxyMetrics.Requests.WithLabelValues("r", "forwarded")
	shared.responses.WithLabelValues("200")
	families, err := shared.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range families {
		known[f.GetName()] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			known[f.GetName()+suffix] = true
		}
	}
	metricRe := regexp.MustCompile(`\bstepgate_[a-z_]+`)
	recordRe := regexp.MustCompile(`\bstepgate:[a-z0-9_:]+`)
	for _, m := range readManifests(t, "deploy/prometheus") {
		groups, _ := m.doc["groups"].([]any)
		if len(groups) == 0 {
			t.Fatalf("%s: no groups", m.file)
		}
		records := map[string]bool{}
		alerts := 0
		var exprs []string
		for _, g := range groups {
			for _, r := range get(g, "rules").([]any) {
				expr, _ := get(r, "expr").(string)
				if expr == "" {
					t.Errorf("%s: rule %v has no expr", m.file, r)
				}
				exprs = append(exprs, expr)
				if name, ok := get(r, "record").(string); ok {
					records[name] = true
				}
				if name, ok := get(r, "alert").(string); ok {
					alerts++
					if get(r, "annotations", "summary") == nil {
						t.Errorf("alert %s has no summary", name)
					}
				}
			}
		}
		if alerts == 0 {
			t.Errorf("%s: no alerts", m.file)
		}
		used := map[string]bool{}
		for _, e := range exprs {
			for _, name := range metricRe.FindAllString(e, -1) {
				used[name] = true
				if !known[name] {
					t.Errorf("%s: %s is not a metric stepgate exports", m.file, name)
				}
			}
			for _, name := range recordRe.FindAllString(e, -1) {
				if !records[name] {
					t.Errorf("%s: %s is not a recording rule of the file", m.file, name)
				}
			}
		}
		for _, want := range []string{"stepgate_otp_verify_total", "stepgate_config_reloads_total", "stepgate_http_responses_total"} {
			if !used[want] {
				t.Errorf("%s: no rule uses %s", m.file, want)
			}
		}
		if !strings.Contains(strings.Join(exprs, "\n"), "kube_pod_container_status_ready") {
			t.Errorf("%s: no readiness alert", m.file)
		}
	}
}

// TestKubernetesRedisPersists checks that the example Redis keeps its data
// across restarts (SPEC §13): an append-only file synced on every write, in
// the directory a persistent volume claim is mounted on, and no eviction.
// Without it, a restart forgets revocations and lockouts, and stepgate
// fails closed (every token refused, every user locked out for
// otp.lockout).
func TestKubernetesRedisPersists(t *testing.T) {
	ms := readManifests(t, "deploy/kubernetes")
	ss := find(ms, "StatefulSet", "stepgate-redis")
	if ss == nil {
		t.Fatal("no StatefulSet stepgate-redis")
	}
	var args []string
	for _, a := range get(ss, "spec", "template", "spec", "containers", 0, "args").([]any) {
		args = append(args, a.(string))
	}
	flag := func(name string) string {
		i := slices.Index(args, "--"+name)
		if i < 0 || i+1 >= len(args) {
			return ""
		}
		return args[i+1]
	}
	for name, want := range map[string]string{
		"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction",
	} {
		if got := flag(name); got != want {
			t.Errorf("redis --%s: got %q; want %q", name, got, want)
		}
	}
	dir := flag("dir")
	var mounted string
	for _, m := range get(ss, "spec", "template", "spec", "containers", 0, "volumeMounts").([]any) {
		if get(m, "mountPath") == dir {
			mounted, _ = get(m, "name").(string)
		}
	}
	if dir == "" || mounted == "" {
		t.Fatalf("redis --dir %q: want a directory a volume is mounted on", dir)
	}
	claimed := false
	for _, c := range get(ss, "spec", "volumeClaimTemplates").([]any) {
		claimed = claimed || get(c, "metadata", "name") == mounted
	}
	if !claimed {
		t.Errorf("volume %q mounted on %s is not a volumeClaimTemplate: the data would not outlive the pod", mounted, dir)
	}
	for _, v := range asList(get(ss, "spec", "template", "spec", "volumes")) {
		if get(v, "name") == mounted {
			t.Errorf("volume %q is also a pod volume (%v); want only the claim", mounted, v)
		}
	}
}

// asList is v as a list, nil when it is not one.
func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
