// Command gen-policy writes a stepgate config for the load benchmark: a
// policy of many rules (literal, glob, regex, host- and method-scoped) in
// which the rules the benchmark requests hit — an allow rule for
// /public/** and a step_up rule for /admin/** — sit near the end, so that
// matching has to get past the rest of the policy (SPEC §4: first match in
// order decides).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gen-policy:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	out, listen, adminListen, publicURL, upstream string
	store, redisAddr, jwtSecretFile, sfSecretFile string
	cookie, mailDir, jwksURL                      string
	memoryLimit                                   string
	rules, cacheSize, invalidCacheSize            int
	verifyConcurrency                             int
	forwardAuth                                   bool
}

func run(args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("gen-policy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", "", "file to write (default: standard output)")
	fs.IntVar(&o.rules, "rules", 1000, "number of policy rules (at least 6)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "server.listen")
	fs.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:9090", "server.admin_listen")
	fs.StringVar(&o.publicURL, "public-url", "", "server.public_url (default: http://LISTEN)")
	fs.StringVar(&o.upstream, "upstream", "http://127.0.0.1:3000", "upstream.url")
	fs.StringVar(&o.store, "store", "memory", "store.driver: memory or redis")
	fs.StringVar(&o.redisAddr, "redis-addr", "127.0.0.1:6379", "store.redis.addr (with -store redis)")
	fs.StringVar(&o.jwtSecretFile, "jwt-secret-file", "", "identity.jwt.hmac_secret_file (required)")
	fs.StringVar(&o.sfSecretFile, "second-factor-secret-file", "", "second_factor.secret_file (required)")
	fs.StringVar(&o.cookie, "cookie", "stepgate_2fa", "second_factor.cookie (no __Host- prefix: public_url is http)")
	fs.StringVar(&o.mailDir, "mail-dir", os.TempDir(), "mail.file.dir (the benchmark sends no mail)")
	fs.StringVar(&o.jwksURL, "jwks-url", "", "identity.jwt.jwks_url with algorithms [RS256] instead of the HMAC secret")
	fs.IntVar(&o.cacheSize, "cache-size", 0, "identity.jwt.cache_size and second_factor.cache_size (0: stepgate's default)")
	fs.IntVar(&o.invalidCacheSize, "invalid-cache-size", 0, "identity.jwt.invalid_cache_size (0: stepgate's default)")
	fs.IntVar(&o.verifyConcurrency, "verify-concurrency", 0, "identity.jwt.verify_concurrency (0: stepgate's default)")
	fs.StringVar(&o.memoryLimit, "memory-limit", "", "runtime.memory_limit (empty: stepgate's default)")
	fs.BoolVar(&o.forwardAuth, "forward-auth", false, "server.forward_auth, answering 127.0.0.1 (server.trusted_proxies)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := build(o)
	if err != nil {
		return err
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if o.out == "" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(o.out, b, 0o600)
}

// The types below mirror the config keys of SPEC §3. Only keys the
// benchmark sets are listed; stepgate rejects unknown keys, so every name
// here must be one the SPEC defines.
type config struct {
	Server       server       `yaml:"server"`
	Upstream     upstream     `yaml:"upstream"`
	Identity     identity     `yaml:"identity"`
	SecondFactor secondFactor `yaml:"second_factor"`
	Mail         mail         `yaml:"mail"`
	Store        store        `yaml:"store"`
	Policies     policies     `yaml:"policies"`
	Runtime      *runtimeCfg  `yaml:"runtime,omitempty"`
}

type runtimeCfg struct {
	MemoryLimit string `yaml:"memory_limit"`
}

type server struct {
	Listen         string   `yaml:"listen"`
	AdminListen    string   `yaml:"admin_listen"`
	PublicURL      string   `yaml:"public_url"`
	TrustedProxies []string `yaml:"trusted_proxies,omitempty"`
	ForwardAuth    bool     `yaml:"forward_auth,omitempty"`
}

type upstream struct {
	URL     string `yaml:"url"`
	Timeout string `yaml:"timeout"`
}

type identity struct {
	Source   string `yaml:"source"`
	LoginURL string `yaml:"login_url"`
	JWT      jwt    `yaml:"jwt"`
}

type jwt struct {
	Cookie         string   `yaml:"cookie"`
	Algorithms     []string `yaml:"algorithms"`
	HMACSecretFile string   `yaml:"hmac_secret_file,omitempty"`
	JWKSURL        string   `yaml:"jwks_url,omitempty"`
	CacheSize      int      `yaml:"cache_size,omitempty"`
	InvalidCache   int      `yaml:"invalid_cache_size,omitempty"`
	VerifyConc     int      `yaml:"verify_concurrency,omitempty"`
	SubjectClaim   string   `yaml:"subject_claim"`
	EmailClaim     string   `yaml:"email_claim"`
	SessionClaim   string   `yaml:"session_claim"`
}

type secondFactor struct {
	SecretFile string `yaml:"secret_file"`
	Cookie     string `yaml:"cookie"`
	TTL        string `yaml:"ttl"`
	CacheSize  int    `yaml:"cache_size,omitempty"`
}

type mail struct {
	Driver string   `yaml:"driver"`
	From   string   `yaml:"from"`
	File   mailFile `yaml:"file"`
}

type mailFile struct {
	Dir string `yaml:"dir"`
}

type store struct {
	Driver string      `yaml:"driver"`
	Redis  *redisStore `yaml:"redis,omitempty"`
}

type redisStore struct {
	Addr      string `yaml:"addr"`
	KeyPrefix string `yaml:"key_prefix"`
}

type policies struct {
	Default string       `yaml:"default"`
	Rules   []rule       `yaml:"rules"`
	Tests   []policyTest `yaml:"tests"`
}

type rule struct {
	Name    string   `yaml:"name"`
	Hosts   []string `yaml:"hosts,omitempty"`
	Paths   []string `yaml:"paths,omitempty"`
	Regex   string   `yaml:"regex,omitempty"`
	Methods []string `yaml:"methods,omitempty"`
	Action  string   `yaml:"action"`
	MaxAge  string   `yaml:"max_age,omitempty"`
}

type policyTest struct {
	Request string `yaml:"request"`
	Expect  string `yaml:"expect"`
	Rule    string `yaml:"rule,omitempty"`
}

func build(o options) (config, error) {
	if o.rules < 6 {
		return config{}, fmt.Errorf("-rules %d: need at least 6 (the policy tests name r0000 and r0003)", o.rules)
	}
	if (o.jwtSecretFile == "" && o.jwksURL == "") || o.sfSecretFile == "" {
		return config{}, fmt.Errorf("-jwt-secret-file and -second-factor-secret-file are required")
	}
	var st store
	switch o.store {
	case "memory":
		st = store{Driver: "memory"}
	case "redis":
		st = store{Driver: "redis", Redis: &redisStore{Addr: o.redisAddr, KeyPrefix: "stepgate-bench:"}}
	default:
		return config{}, fmt.Errorf("-store %q: want memory or redis", o.store)
	}
	public := o.publicURL
	if public == "" {
		public = "http://" + o.listen
	}
	srv := server{Listen: o.listen, AdminListen: o.adminListen, PublicURL: public}
	if o.forwardAuth {
		srv.ForwardAuth, srv.TrustedProxies = true, []string{"127.0.0.1/32"}
	}
	j := jwt{
		Cookie:         "access_token",
		Algorithms:     []string{"HS256"},
		HMACSecretFile: o.jwtSecretFile,
		SubjectClaim:   "sub",
		EmailClaim:     "email",
		SessionClaim:   "sid",
		CacheSize:      o.cacheSize,
		InvalidCache:   o.invalidCacheSize,
		VerifyConc:     o.verifyConcurrency,
	}
	if o.jwksURL != "" {
		j.Algorithms, j.HMACSecretFile, j.JWKSURL = []string{"RS256"}, "", o.jwksURL
	}
	var rt *runtimeCfg
	if o.memoryLimit != "" {
		rt = &runtimeCfg{MemoryLimit: o.memoryLimit}
	}
	return config{
		Runtime:  rt,
		Server:   srv,
		Upstream: upstream{URL: o.upstream, Timeout: "30s"},
		Identity: identity{
			Source: "jwt",
			// No login URL: a request without identity gets a 401, which
			// the benchmark's pre-flight check reports as a failure.
			LoginURL: "",
			JWT:      j,
		},
		SecondFactor: secondFactor{SecretFile: o.sfSecretFile, Cookie: o.cookie, TTL: "12h", CacheSize: o.cacheSize},
		Mail:         mail{Driver: "file", From: "stepgate bench <no-reply@example.com>", File: mailFile{Dir: o.mailDir}},
		Store:        st,
		Policies:     makePolicies(o.rules),
	}, nil
}

// makePolicies returns n rules. The rules at n-3 (public, allow /public/**)
// and n-2 (admin, step_up /admin/**) are the ones the benchmark hits; every
// other rule is filler that never matches /public/... or /admin/... but
// has to be ruled out: literal paths, globs with * and **, unindexable
// regexes, and host- and method-scoped rules.
func makePolicies(n int) policies {
	rules := make([]rule, 0, n)
	for i := range n {
		name := fmt.Sprintf("r%04d", i)
		var r rule
		switch {
		case i == n-3:
			r = rule{Name: "public", Paths: []string{"/public/**"}, Action: "allow"}
		case i == n-2:
			r = rule{Name: "admin", Paths: []string{"/admin/**"}, Action: "step_up", MaxAge: "1h"}
		default:
			switch i % 6 {
			case 0:
				r = rule{Name: name, Paths: []string{fmt.Sprintf("/app/svc%04d/items", i)}, Action: "authenticate"}
			case 1:
				r = rule{Name: name, Paths: []string{fmt.Sprintf("/svc%04d/*/detail/**", i)}, Methods: []string{"GET", "POST"}, Action: "authenticate"}
			case 2:
				r = rule{Name: name, Regex: fmt.Sprintf(`^/api/v[0-9]+/r%04d(/|$)`, i), Action: "step_up", MaxAge: "10m"}
			case 3:
				r = rule{Name: name, Hosts: []string{fmt.Sprintf("h%04d.example.com", i)}, Paths: []string{"/**"}, Action: "deny"}
			case 4:
				r = rule{Name: name, Paths: []string{fmt.Sprintf("/static/v%04d/**", i), fmt.Sprintf("/assets/v%04d/*", i)}, Action: "allow"}
			case 5:
				r = rule{Name: name, Regex: fmt.Sprintf(`^/reports/[a-z]+/%04d/[0-9]{4}-[0-9]{2}$`, i), Methods: []string{"DELETE"}, Action: "deny"}
			}
		}
		rules = append(rules, r)
	}
	return policies{
		Default: "authenticate",
		Rules:   rules,
		// The tests make `stepgate check` and every start prove that the
		// benchmark's requests are decided by the rules meant to decide them.
		Tests: []policyTest{
			{Request: "GET http://127.0.0.1/public/bench", Expect: "allow", Rule: "public"},
			{Request: "GET http://127.0.0.1/admin/bench", Expect: "step_up", Rule: "admin"},
			{Request: "GET http://127.0.0.1/app/svc0000/items", Expect: "authenticate", Rule: "r0000"},
			{Request: "GET http://h0003.example.com/admin/bench", Expect: "deny", Rule: "r0003"},
			{Request: "GET http://127.0.0.1/elsewhere", Expect: "authenticate"},
		},
	}
}
