package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/stepgate/stepgate/policy"
	"github.com/stepgate/stepgate/proxy"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usage = `stepgate: a reverse proxy that enforces step-up authentication.

Usage:
  stepgate serve -config FILE      run the proxy (also: stepgate -config FILE)
  stepgate check -config FILE      validate the config and run its policy tests
  stepgate explain -config FILE [-H 'Name: value']... METHOD URL|PATH
                                   which rule decides a request, why, and what it requires
  stepgate demo                    a complete local demo with no setup
  stepgate factors list|remove|rekey -config FILE [-user SUB] [-id ID]
                                   enrolled factors: list, help-desk removal, key rotation
  stepgate version                 version and build info
  stepgate healthcheck [-url URL]  GET the admin /healthz (for container HEALTHCHECKs); exit 0 when 200

Environment variables STEPGATE_<KEY_PATH> override the file, for example
STEPGATE_SECOND_FACTOR_SECRET for second_factor.secret.
`

// run is the whole program; main only supplies the process's context,
// arguments, environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stderr)
	case "check":
		return runCheck(rest, getenv, stdout, stderr)
	case "explain":
		return runExplain(rest, getenv, stdout, stderr)
	case "version":
		return runVersion(rest, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, rest, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, getenv, stdout, stderr)
	case "factors":
		return runFactors(ctx, rest, getenv, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	// SPEC §2: plain `stepgate -config FILE` serves.
	if strings.HasPrefix(cmd, "-") {
		return runServe(ctx, args, getenv, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// parseFlags parses a command's flags; -h prints its usage and ends the
// command successfully (errHelp).
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return errHelp
	}
	return err
}

var errHelp = errors.New("help requested")

func newFlagSet(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: stepgate %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs, fs.String("config", "", "config `FILE` (YAML; config.yaml in the source is the annotated reference)")
}

func configFlag(fs *flag.FlagSet, args []string, path *string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		fs.Usage()
		return errors.New(fs.Name() + ": -config FILE is required")
	}
	return nil
}

// runCheck is `stepgate check`: every problem on stderr, exit 1; or a
// summary and exit 0.
func runCheck(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, path := newFlagSet("check", "check -config FILE", stderr)
	if err := configFlag(fs, args, path); err != nil {
		return ignoreHelp(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("check: unexpected arguments %q", fs.Args())
	}
	cfg, err := load(*path, getenv)
	if cfg != nil {
		for _, w := range cfg.warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
	}
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, ce.Error())
			return fmt.Errorf("config check failed: %d problem%s", len(ce.Problems), plural(len(ce.Problems)))
		}
		return err
	}
	fmt.Fprintf(stdout, "config OK: %d rule%s, %d policy test%s passed",
		cfg.policy.Len(), plural(cfg.policy.Len()), len(cfg.Policies.Tests), plural(len(cfg.Policies.Tests)))
	if n := len(cfg.warnings); n > 0 {
		fmt.Fprintf(stdout, ", %d warning%s", n, plural(n))
	}
	fmt.Fprintln(stdout)
	if names := envOverrides(cfg); len(names) > 0 {
		// Names only: the values may be secrets.
		fmt.Fprintf(stdout, "environment overrides: %s\n", strings.Join(names, ", "))
	}
	return nil
}

// envOverrides lists, sorted, the STEPGATE_ variables that set a key.
func envOverrides(cfg *Config) []string {
	names := make([]string, 0, len(cfg.meta.env))
	for _, n := range cfg.meta.env {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func ignoreHelp(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// headerFlags collects repeated -H 'Name: value'.
type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(s string) error { *h = append(*h, s); return nil }

// runExplain is `stepgate explain`: it decides a request as the proxy
// would (same canonicalisation, same proxy.BuildRequest) and says why.
func runExplain(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, path := newFlagSet("explain", "explain -config FILE [-H 'Name: value']... METHOD URL", stderr)
	var headers headerFlags
	fs.Var(&headers, "H", "request header `'Name: value'` (repeatable)")
	if err := configFlag(fs, args, path); err != nil {
		return ignoreHelp(err)
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("explain: want METHOD URL")
	}
	method, rawURL := fs.Arg(0), fs.Arg(1)

	// explain dry-runs policies: a config whose only problems are elsewhere
	// (say, a secret given only in production) can still be explained.
	cfg, err := load(*path, getenv)
	if cfg == nil || cfg.policy == nil {
		if err == nil {
			err = errors.New("no policy")
		}
		return err
	}
	if err != nil {
		fmt.Fprintf(stderr, "warning: the config has problems outside what explain needs (run stepgate check):\n%v\n", err)
	}

	r, err := explainRequest(method, rawURL, headers)
	if err != nil {
		return err
	}
	if r.Host == "" {
		fmt.Fprintf(stdout, "request: %s %s (no Host: rules with hosts do not match; give a full URL or -H 'Host: …' to pick one)\n", r.Method, r.RequestURI)
	} else {
		fmt.Fprintf(stdout, "request: %s %s (Host %s)\n", r.Method, r.RequestURI, r.Host)
	}
	t, err := policy.ParseTarget(r.RequestURI)
	if err != nil {
		fmt.Fprintf(stdout, "refused: %v\n", err)
		fmt.Fprintln(stdout, "decision: 400 Bad Request; never matched, never forwarded (README: The policy language, canonical paths)")
		return nil
	}
	fmt.Fprintf(stdout, "canonical path: %s", t.Path)
	if t.MatchPath != t.Path {
		fmt.Fprintf(stdout, " (matched as %s)", t.MatchPath)
	}
	fmt.Fprintln(stdout)
	pr, err := proxy.BuildRequest(r, t)
	if err != nil {
		// The gate refuses what it cannot read for sure (SPEC §4).
		fmt.Fprintf(stdout, "refused: %v\n", err)
		fmt.Fprintln(stdout, "decision: 400 Bad Request; never matched, never forwarded (README: The policy language, canonical paths)")
		return nil
	}
	ex := cfg.policy.Explain(pr)
	if len(ex.Methods) > 0 {
		fmt.Fprintf(stdout, "methods considered: %s\n", strings.Join(ex.Methods, ", "))
	}
	for _, s := range ex.Steps {
		verdict := "no match"
		if s.Matched {
			verdict = "MATCH"
		}
		fmt.Fprintf(stdout, "  rule %d %q: %s", s.Index, s.Rule, verdict)
		if s.Why != "" {
			fmt.Fprintf(stdout, ": %s", s.Why)
		}
		fmt.Fprintln(stdout)
	}
	d := ex.Decision
	if d.Index < 0 {
		fmt.Fprintf(stdout, "decision: %s (no rule matched: policies.default)\n", d.Action)
	} else {
		fmt.Fprintf(stdout, "decision: %s by rule %q (rule %d)\n", d.Action, d.Rule, d.Index)
	}
	fmt.Fprintf(stdout, "requires: %s\n", requirement(d))
	if d.Mode == policy.Audit {
		fmt.Fprintln(stdout, "mode: audit: the decision is logged and counted, but the request is forwarded")
	}
	return nil
}

// requirement says in words what a decision asks of the request.
func requirement(d policy.Decision) string {
	switch d.Action {
	case policy.Allow:
		return "nothing: forwarded without identity"
	case policy.Authenticate:
		return "identity"
	case policy.StepUp:
		s := "identity and a second factor no older than " + shortDuration(d.MaxAge)
		if d.ACR != "" {
			s += fmt.Sprintf(" (acr %q)", d.ACR)
		}
		return s
	case policy.Deny:
		return "nothing can satisfy it: answered 403"
	}
	return "unknown action: denied"
}

// shortDuration prints 10m rather than 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// explainRequest builds the request explain decides. The request target is
// taken verbatim from URL (after scheme and host), so that explain sees
// what a client sending it would, ambiguities included.
//
// As in policy tests, URL may also be a path ("/static/app.css"): the
// request then has no Host (rules with hosts do not match it) unless -H
// 'Host: …' gives one.
func explainRequest(method, rawURL string, headers []string) (*http.Request, error) {
	scheme, host, target := "http", "", rawURL
	if !strings.HasPrefix(rawURL, "/") {
		var rest string
		var ok bool
		scheme, rest, ok = strings.Cut(rawURL, "://")
		if !ok || (scheme != "http" && scheme != "https") {
			return nil, fmt.Errorf("explain: %q must be an absolute http:// or https:// URL, or a path starting with '/'", rawURL)
		}
		host, target = rest, "/"
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			host, target = rest[:i], rest[i:]
			if !strings.HasPrefix(target, "/") {
				target = "/" + target
			}
		}
		if host == "" {
			return nil, fmt.Errorf("explain: %q has no host", rawURL)
		}
	}
	// A fragment is never sent by clients; policy tests drop it too.
	target, _, _ = strings.Cut(target, "#")
	if target == "" {
		target = "/"
	}
	r, err := http.NewRequest(method, scheme+"://placeholder/", nil)
	if err != nil {
		return nil, fmt.Errorf("explain: %w", err)
	}
	r.RequestURI = target
	r.Host = host
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("explain: header %q must look like 'Name: value'", h)
		}
		value = strings.TrimSpace(value)
		if strings.EqualFold(name, "Host") {
			r.Host = value
			continue
		}
		r.Header.Add(name, value)
	}
	return r, nil
}

// runHealthcheck is `stepgate healthcheck`: a GET of the admin /healthz
// for container HEALTHCHECKs, since the distroless image has no shell or
// curl. Exit 0 on 200, else an error.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "http://127.0.0.1:9090/healthz", "health `URL` of the admin listener")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this `duration`")
	if err := parseFlags(fs, args); err != nil {
		return ignoreHelp(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("healthcheck: unexpected arguments %q", fs.Args())
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	client := &http.Client{
		// A health endpoint that redirects is not healthy.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", *target, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// runVersion is `stepgate version`.
func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := parseFlags(fs, args); err != nil {
		return ignoreHelp(err)
	}
	fmt.Fprintf(stdout, "stepgate %s\n", version)
	fmt.Fprintf(stdout, "go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			fmt.Fprintf(stdout, "module: %s %s\n", bi.Main.Path, bi.Main.Version)
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs", "vcs.revision", "vcs.time", "vcs.modified", "CGO_ENABLED", "-trimpath":
				fmt.Fprintf(stdout, "%s: %s\n", s.Key, s.Value)
			}
		}
	}
	return nil
}
