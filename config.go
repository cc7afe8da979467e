package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/stepgate/stepgate/policy"
)

// Config is the whole stepgate configuration, key for key SPEC §3. The
// defaults in configDefaults apply to every key the file leaves out; the
// zero values documented below are what a field holds when a default is
// explicitly overridden with an empty value.
type Config struct {
	Server       ServerConfig       `mapstructure:"server"`
	Upstream     UpstreamConfig     `mapstructure:"upstream"`
	Identity     IdentityConfig     `mapstructure:"identity"`
	SecondFactor SecondFactorConfig `mapstructure:"second_factor"`
	OTP          OTPConfig          `mapstructure:"otp"`
	Mail         MailConfig         `mapstructure:"mail"`
	Store        StoreConfig        `mapstructure:"store"`
	Policies     PoliciesConfig     `mapstructure:"policies"`
	Log          LogConfig          `mapstructure:"log"`

	// meta locates keys in the file for error messages.
	meta configMeta
	// policy is compiled by validate; nil until validate succeeds.
	policy *policy.Policy
	// publicKeyPEM is the content of identity.jwt.public_key_file.
	publicKeyPEM []byte
	// redisCAPEM is the content of store.redis.tls_ca_file.
	redisCAPEM []byte
}

// ServerConfig is SPEC §3 server.
type ServerConfig struct {
	// Listen is the proxy's address. Default 127.0.0.1:8080.
	Listen string `mapstructure:"listen"`
	// AdminListen serves /metrics, /healthz and /readyz, never the proxy
	// port. Default 127.0.0.1:9090.
	AdminListen string `mapstructure:"admin_listen"`
	// PublicURL is the external base URL; https means Secure cookies.
	PublicURL string `mapstructure:"public_url"`
	// Prefix is the reserved path for stepgate's own pages. Default /.stepup.
	Prefix string `mapstructure:"prefix"`
	// TrustedProxies are CIDRs whose X-Forwarded-* headers are believed;
	// empty means none.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// CaseInsensitivePaths matches paths ignoring ASCII case (IIS).
	CaseInsensitivePaths bool `mapstructure:"case_insensitive_paths"`
	// ShutdownGrace is how long in-flight requests may run after SIGTERM
	// or SIGINT before their connections are closed. Default 15s; zero
	// closes them at once.
	ShutdownGrace time.Duration `mapstructure:"shutdown_grace"`
}

// LogConfig is the log section (README "Operations"; not in SPEC §3, which
// only asks for JSON audit logs).
type LogConfig struct {
	// Level is the least severe level written: debug, info, warn or error.
	// Default info. Audit records are written at info or above.
	Level string `mapstructure:"level"`
	// Format is json (default, one object per line) or text (slog's
	// key=value lines, for reading by eye).
	Format string `mapstructure:"format"`
	// Access writes one line per proxied request (method, path without
	// query, status, duration, request id). Default false: audit records
	// cover the security events without logging every request.
	Access bool `mapstructure:"access"`
}

// UpstreamConfig is SPEC §3 upstream.
type UpstreamConfig struct {
	URL string `mapstructure:"url"`
	// Timeout bounds an upstream exchange up to its response headers.
	Timeout time.Duration `mapstructure:"timeout"`
}

// IdentityConfig is SPEC §3 identity.
type IdentityConfig struct {
	Source string `mapstructure:"source"` // jwt | header
	// LoginURL is where unauthenticated browsers go; {rd} is the escaped
	// return URL. Empty means a 401 page.
	LoginURL string       `mapstructure:"login_url"`
	JWT      JWTConfig    `mapstructure:"jwt"`
	Header   HeaderConfig `mapstructure:"header"`
}

// JWTConfig is SPEC §3 identity.jwt.
type JWTConfig struct {
	Cookie     string   `mapstructure:"cookie"`
	Algorithms []string `mapstructure:"algorithms"`
	// HMACSecret holds the key after load, whether it came from the file,
	// hmac_secret_file or STEPGATE_IDENTITY_JWT_HMAC_SECRET.
	HMACSecret     string `mapstructure:"hmac_secret"`
	HMACSecretFile string `mapstructure:"hmac_secret_file"`
	PublicKeyFile  string `mapstructure:"public_key_file"`
	JWKSURL        string `mapstructure:"jwks_url"`
	Issuer         string `mapstructure:"issuer"`   // "" means not checked
	Audience       string `mapstructure:"audience"` // "" means not checked
	SubjectClaim   string `mapstructure:"subject_claim"`
	EmailClaim     string `mapstructure:"email_claim"`
	SessionClaim   string `mapstructure:"session_claim"`
}

// HeaderConfig is SPEC §3 identity.header.
type HeaderConfig struct {
	User           string   `mapstructure:"user"`
	Email          string   `mapstructure:"email"`
	TrustedProxies []string `mapstructure:"trusted_proxies"`
}

// SecondFactorConfig is SPEC §3 second_factor.
type SecondFactorConfig struct {
	// Secret holds the signing key after load, whichever way it was given.
	Secret          string   `mapstructure:"secret"`
	SecretFile      string   `mapstructure:"secret_file"`
	PreviousSecrets []string `mapstructure:"previous_secrets"`
	// Cookie defaults to __Host-stepgate, or to stepgate when public_url
	// is http:// (browsers refuse __Host- cookies without Secure).
	Cookie string        `mapstructure:"cookie"`
	Header string        `mapstructure:"header"`
	TTL    time.Duration `mapstructure:"ttl"`
}

// OTPConfig is SPEC §3 otp.
type OTPConfig struct {
	Length             int           `mapstructure:"length"`
	TTL                time.Duration `mapstructure:"ttl"`
	MaxAttempts        int           `mapstructure:"max_attempts"`
	ResendAfter        time.Duration `mapstructure:"resend_after"`
	MaxSendsPerHour    int           `mapstructure:"max_sends_per_hour"`
	MaxFailuresPerHour int           `mapstructure:"max_failures_per_hour"`
	Lockout            time.Duration `mapstructure:"lockout"`
}

// MailConfig is SPEC §3 mail.
type MailConfig struct {
	Driver  string         `mapstructure:"driver"` // smtp | file | log
	From    string         `mapstructure:"from"`
	Subject string         `mapstructure:"subject"`
	SMTP    SMTPConfig     `mapstructure:"smtp"`
	File    MailFileConfig `mapstructure:"file"`
}

// SMTPConfig is SPEC §3 mail.smtp. Password is not in the SPEC example but
// follows its rule that every secret has an inline key and a *_file key.
type SMTPConfig struct {
	Host         string `mapstructure:"host"`
	Port         int    `mapstructure:"port"`
	Username     string `mapstructure:"username"`
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
	TLS          string `mapstructure:"tls"` // starttls | tls | none
}

// MailFileConfig is SPEC §3 mail.file.
type MailFileConfig struct {
	Dir string `mapstructure:"dir"`
}

// StoreConfig is SPEC §3 store.
type StoreConfig struct {
	Driver string      `mapstructure:"driver"` // memory | redis
	Redis  RedisConfig `mapstructure:"redis"`
}

// RedisConfig is SPEC §3 store.redis (password as for SMTPConfig).
type RedisConfig struct {
	Addr         string `mapstructure:"addr"`
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
	DB           int    `mapstructure:"db"`
	KeyPrefix    string `mapstructure:"key_prefix"`
	// TLS makes every connection to Redis TLS (1.2 or later). Default
	// false: plain TCP, for a Redis on the same host or a private network.
	TLS bool `mapstructure:"tls"`
	// TLSCAFile is a PEM bundle of the CAs that may sign the server's
	// certificate. Empty means the system roots. Needs tls: true.
	TLSCAFile string `mapstructure:"tls_ca_file"`
	// TLSServerName is the name the server's certificate must carry.
	// Empty means the host of addr. Needs tls: true.
	TLSServerName string `mapstructure:"tls_server_name"`
	// Timeout bounds dialing, each command and the wait for a pooled
	// connection. Default 2s.
	Timeout time.Duration `mapstructure:"timeout"`
	// PoolSize is the most connections to Redis per process. Default 0,
	// which means 10 × GOMAXPROCS but at least 64 (redisstore.Options).
	PoolSize int `mapstructure:"pool_size"`
}

// PoliciesConfig is SPEC §3 policies.
type PoliciesConfig struct {
	Default string       `mapstructure:"default"`
	Rules   []RuleConfig `mapstructure:"rules"`
	Tests   []TestConfig `mapstructure:"tests"`
}

// RuleConfig is one policies.rules entry.
type RuleConfig struct {
	Name    string        `mapstructure:"name"`
	Hosts   []string      `mapstructure:"hosts"`
	Paths   []string      `mapstructure:"paths"`
	Regex   string        `mapstructure:"regex"`
	Methods []string      `mapstructure:"methods"`
	Action  string        `mapstructure:"action"`
	MaxAge  time.Duration `mapstructure:"max_age"` // 0 means second_factor.ttl
	ACR     string        `mapstructure:"acr"`
	Mode    string        `mapstructure:"mode"` // "" means enforce
}

// TestConfig is one policies.tests entry.
type TestConfig struct {
	Request string `mapstructure:"request"`
	Expect  string `mapstructure:"expect"`
	Rule    string `mapstructure:"rule"`
}

// configDefaults holds every SPEC §3 default. Lists of rules and tests have
// none.
var configDefaults = map[string]any{
	"server.listen":                   "127.0.0.1:8080",
	"server.admin_listen":             "127.0.0.1:9090",
	"server.public_url":               "http://127.0.0.1:8080",
	"server.prefix":                   "/.stepup",
	"server.trusted_proxies":          []string{},
	"server.case_insensitive_paths":   false,
	"server.shutdown_grace":           15 * time.Second,
	"upstream.url":                    "http://127.0.0.1:3000",
	"upstream.timeout":                30 * time.Second,
	"identity.source":                 "jwt",
	"identity.login_url":              "/login?rd={rd}",
	"identity.jwt.cookie":             "access_token",
	"identity.jwt.algorithms":         []string{"HS256"},
	"identity.jwt.hmac_secret":        "",
	"identity.jwt.hmac_secret_file":   "",
	"identity.jwt.public_key_file":    "",
	"identity.jwt.jwks_url":           "",
	"identity.jwt.issuer":             "",
	"identity.jwt.audience":           "",
	"identity.jwt.subject_claim":      "sub",
	"identity.jwt.email_claim":        "email",
	"identity.jwt.session_claim":      "sid",
	"identity.header.user":            "X-Forwarded-User",
	"identity.header.email":           "X-Forwarded-Email",
	"identity.header.trusted_proxies": []string{"127.0.0.1/32"},
	"second_factor.secret":            "",
	"second_factor.secret_file":       "",
	"second_factor.previous_secrets":  []string{},
	"second_factor.cookie":            defaultCookie,
	"second_factor.header":            "X-Second-Factor-Token",
	"second_factor.ttl":               12 * time.Hour,
	"otp.length":                      6,
	"otp.ttl":                         5 * time.Minute,
	"otp.max_attempts":                5,
	"otp.resend_after":                30 * time.Second,
	"otp.max_sends_per_hour":          5,
	"otp.max_failures_per_hour":       20,
	"otp.lockout":                     15 * time.Minute,
	"mail.driver":                     "smtp",
	"mail.from":                       "stepgate <no-reply@example.com>",
	"mail.subject":                    "Your verification code",
	"mail.smtp.host":                  "",
	"mail.smtp.port":                  587,
	"mail.smtp.username":              "",
	"mail.smtp.password":              "",
	"mail.smtp.password_file":         "",
	"mail.smtp.tls":                   "starttls",
	"mail.file.dir":                   "",
	"store.driver":                    "memory",
	"store.redis.addr":                "127.0.0.1:6379",
	"store.redis.password":            "",
	"store.redis.password_file":       "",
	"store.redis.db":                  0,
	"store.redis.key_prefix":          "stepgate:",
	"store.redis.tls":                 false,
	"store.redis.tls_ca_file":         "",
	"store.redis.tls_server_name":     "",
	"store.redis.timeout":             2 * time.Second,
	"store.redis.pool_size":           0,
	"policies.default":                "authenticate",
	"log.level":                       "info",
	"log.format":                      "json",
	"log.access":                      false,
}

const defaultCookie = "__Host-stepgate"

// secretPairs are the secrets that may be given inline or as a file (SPEC
// §2: "every secret can also be read from a file").
var secretPairs = []struct{ key, fileKey string }{
	{"second_factor.secret", "second_factor.secret_file"},
	{"identity.jwt.hmac_secret", "identity.jwt.hmac_secret_file"},
	{"mail.smtp.password", "mail.smtp.password_file"},
	{"store.redis.password", "store.redis.password_file"},
}

// maxConfigFile bounds the config file and every *_file read.
const maxConfigFile = 4 << 20

// configMeta remembers where each key came from, for messages.
type configMeta struct {
	file  string            // config file as given
	lines map[string]int    // key path => line in file
	env   map[string]string // key path => environment variable that set it
}

// Problem is one configuration error, located by key path and, where the
// file has the key, its line.
type Problem struct {
	File string // config file as given; "" for none
	Line int    // 1-based; 0 when the key is not in the file
	Key  string // e.g. policies.rules[2].paths[0]
	Env  string // the environment variable that set the value, if any
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	}
	b.WriteString(p.Key)
	if p.Env != "" {
		fmt.Fprintf(&b, " (from %s)", p.Env)
	}
	b.WriteString(": ")
	b.WriteString(p.Msg)
	return b.String()
}

// ConfigError lists every problem found in a configuration.
type ConfigError struct {
	Problems []Problem
}

func (e *ConfigError) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

// problems collects Problems for one config.
type problems struct {
	meta *configMeta
	list []Problem
}

func (ps *problems) add(key, format string, args ...any) {
	if key == "" {
		key = "(top level)"
	}
	p := Problem{File: ps.meta.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if env, ok := ps.meta.env[key]; ok {
		p.Env = env
	} else {
		p.Line = ps.meta.line(key)
	}
	ps.list = append(ps.list, p)
}

// addAt adds a problem at a given line (for keys whose path is ambiguous,
// such as a duplicate).
func (ps *problems) addAt(key string, line int, format string, args ...any) {
	ps.list = append(ps.list, Problem{File: ps.meta.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// addOnce adds a problem unless key already has one: policy.Compile may
// find again what validate found first.
func (ps *problems) addOnce(key, format string, args ...any) {
	for _, p := range ps.list {
		if p.Key == key {
			return
		}
	}
	ps.add(key, format, args...)
}

func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	list := append([]Problem(nil), ps.list...)
	sort.SliceStable(list, func(i, j int) bool { return list[i].Line < list[j].Line })
	return &ConfigError{Problems: list}
}

// line finds key's line, or that of its nearest ancestor in the file.
func (m *configMeta) line(key string) int {
	for key != "" {
		if l, ok := m.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// loadConfig reads, decodes and validates the config at path. Environment
// variables (read through getenv, so tests never touch the process) override
// the file. It returns every problem at once, and never a config that has one.
func loadConfig(path string, getenv func(string) string) (*Config, error) {
	cfg, err := load(path, getenv)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// load is loadConfig that also returns the config when only validation
// failed (cfg.policy may still be set), for explain, which dry-runs the
// policy of a config that is not complete yet. Anything that serves must use
// loadConfig.
func load(path string, getenv func(string) string) (*Config, error) {
	raw, err := readLimited(path, maxConfigFile)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg := &Config{meta: configMeta{file: path, lines: map[string]int{}, env: map[string]string{}}}
	ps := &problems{meta: &cfg.meta}

	// The file is parsed as yaml.Node first: to know each key's line, and
	// to check keys and scalar types against Config with their lines.
	// Offending nodes are removed so that one mistake does not hide others.
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var root *yaml.Node
	if len(doc.Content) > 0 {
		root = doc.Content[0]
		recordLines(root, "", cfg.meta.lines)
		if !checkNode(root, reflect.TypeFor[Config](), "", ps) {
			root = nil
		}
	}
	cleaned, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if root == nil {
		cleaned = nil
	}

	v := viper.New()
	for k, d := range configDefaults {
		v.SetDefault(k, d)
	}
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(cleaned)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	applyEnv(v, getenv, cfg, ps)

	// Exact decoding is the backstop of checkNode: any key it let through
	// that Config does not have is still an error.
	hook := viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	))
	if err := v.UnmarshalExact(cfg, hook); err != nil {
		ps.add("config", "%v", err)
		return nil, ps.err()
	}
	cfg.resolveSecrets(ps)
	cfg.applyDerivedDefaults()
	cfg.validate(ps)
	return cfg, ps.err()
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}

// recordLines maps key paths such as policies.rules[2].paths[0] to lines.
func recordLines(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := joinKey(path, k.Value)
			lines[p] = k.Line
			recordLines(val, p, lines)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = item.Line
			recordLines(item, p, lines)
		}
	}
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

var durationType = reflect.TypeFor[time.Duration]()

// checkNode checks n against t: unknown keys, lists where lists belong,
// scalars that parse as their field's type. It removes what it reports.
func checkNode(n *yaml.Node, t reflect.Type, path string, ps *problems) bool {
	if isNull(n) {
		return true
	}
	if n.Kind == yaml.AliasNode {
		ps.add(path, "YAML aliases are not supported")
		return false
	}
	switch {
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			ps.add(path, "must be a mapping")
			return false
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			if tag := f.Tag.Get("mapstructure"); tag != "" && f.IsExported() {
				fields[tag] = f.Type
			}
		}
		kept := n.Content[:0:0]
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := joinKey(path, k.Value)
			if first, dup := seen[k.Value]; dup {
				// yaml.Node keeps both; which one wins would be a guess.
				ps.addAt(p, k.Line, "duplicate key (first at line %d)", first)
				continue
			}
			seen[k.Value] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				ps.add(p, "unknown key%s", suggest(k.Value, fields))
				continue
			}
			if checkNode(val, ft, p, ps) {
				kept = append(kept, k, val)
			}
		}
		n.Content = kept
		return true
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			ps.add(path, "must be a list")
			return false
		}
		kept := n.Content[:0:0]
		for i, item := range n.Content {
			if checkNode(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), ps) {
				kept = append(kept, item)
			}
		}
		n.Content = kept
		return true
	}
	if n.Kind != yaml.ScalarNode {
		ps.add(path, "must be a single value")
		return false
	}
	if err := checkScalar(n.Value, t); err != nil {
		ps.add(path, "%v", err)
		return false
	}
	return true
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// checkScalar reports whether s parses as a value of t.
func checkScalar(s string, t reflect.Type) error {
	switch {
	case t == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (like 30s, 10m, 12h)", s)
		}
		if d < 0 {
			return fmt.Errorf("%q is negative", s)
		}
	case t.Kind() == reflect.Int:
		if _, err := strconv.Atoi(s); err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
	case t.Kind() == reflect.Bool:
		if _, err := strconv.ParseBool(s); err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
	}
	return nil
}

// suggest names the known key closest to k, for typos.
func suggest(k string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for f := range fields {
		if d := editDistance(k, f); d < bestD || (d == bestD && best != "" && f < best) {
			best, bestD = f, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// leafKeys lists every key path that is a value rather than a section,
// skipping the lists of rules and tests (which the environment cannot set).
func leafKeys(t reflect.Type, path string, out *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || !f.IsExported() {
			continue
		}
		p := joinKey(path, tag)
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != durationType:
			leafKeys(f.Type, p, out)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
		default:
			*out = append(*out, p)
		}
	}
}

// configKeyTypes maps each leaf key path to its Go type.
func configKeyTypes() map[string]reflect.Type {
	var keys []string
	leafKeys(reflect.TypeFor[Config](), "", &keys)
	types := make(map[string]reflect.Type, len(keys))
	for _, k := range keys {
		t := reflect.TypeFor[Config]()
		for part := range strings.SplitSeq(k, ".") {
			for i := range t.NumField() {
				if t.Field(i).Tag.Get("mapstructure") == part {
					t = t.Field(i).Type
					break
				}
			}
		}
		types[k] = t
	}
	return types
}

// envName is SPEC §2: STEPGATE_ + the key path upper-cased, _ for '.'.
func envName(key string) string {
	return "STEPGATE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// applyEnv overrides keys from the environment. An empty variable counts as
// unset. Lists are comma-separated.
func applyEnv(v *viper.Viper, getenv func(string) string, cfg *Config, ps *problems) {
	types := configKeyTypes()
	keys := make([]string, 0, len(types))
	for k := range types {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := envName(k)
		val := getenv(name)
		if val == "" {
			continue
		}
		cfg.meta.env[k] = name
		t := types[k]
		if t.Kind() == reflect.Slice {
			var list []string
			for s := range strings.SplitSeq(val, ",") {
				if s = strings.TrimSpace(s); s != "" {
					list = append(list, s)
				}
			}
			v.Set(k, list)
			continue
		}
		if err := checkScalar(val, t); err != nil {
			ps.add(k, "%v", err)
			continue
		}
		v.Set(k, val)
	}
	// An environment variable for either half of a secret pair overrides
	// the whole pair from the file, so that a file's secret_file does not
	// conflict with STEPGATE_..._SECRET.
	for _, sp := range secretPairs {
		_, envKey := cfg.meta.env[sp.key]
		_, envFile := cfg.meta.env[sp.fileKey]
		if envKey != envFile {
			if envKey {
				v.Set(sp.fileKey, "")
			} else {
				v.Set(sp.key, "")
			}
		}
	}
}

// secretField returns a pointer to the inline field of a secret pair.
func (c *Config) secretField(key string) (*string, *string) {
	switch key {
	case "second_factor.secret":
		return &c.SecondFactor.Secret, &c.SecondFactor.SecretFile
	case "identity.jwt.hmac_secret":
		return &c.Identity.JWT.HMACSecret, &c.Identity.JWT.HMACSecretFile
	case "mail.smtp.password":
		return &c.Mail.SMTP.Password, &c.Mail.SMTP.PasswordFile
	case "store.redis.password":
		return &c.Store.Redis.Password, &c.Store.Redis.PasswordFile
	}
	panic("unknown secret " + key)
}

// resolveSecrets reads every *_file secret into its inline field.
func (c *Config) resolveSecrets(ps *problems) {
	for _, sp := range secretPairs {
		val, file := c.secretField(sp.key)
		if *val != "" && *file != "" {
			ps.add(sp.key, "set either %s or %s, not both", sp.key, sp.fileKey)
			continue
		}
		if *file == "" {
			continue
		}
		s, err := readSecretFile(*file)
		if err != nil {
			ps.add(sp.fileKey, "%v", err)
			continue
		}
		*val = s
	}
	if f := c.Identity.JWT.PublicKeyFile; f != "" {
		b, err := readLimited(f, 1<<20)
		if err != nil {
			ps.add("identity.jwt.public_key_file", "%v", err)
		}
		c.publicKeyPEM = b
	}
	if f := c.Store.Redis.TLSCAFile; f != "" {
		b, err := readLimited(f, 1<<20)
		if err != nil {
			ps.add("store.redis.tls_ca_file", "%v", err)
		}
		c.redisCAPEM = b
	}
}

// readSecretFile reads a secret, without the trailing newline editors and
// `echo` add.
func readSecretFile(path string) (string, error) {
	b, err := readLimited(path, 64<<10)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", errors.New("file " + path + " is empty")
	}
	return s, nil
}

// applyDerivedDefaults sets defaults that depend on other keys.
func (c *Config) applyDerivedDefaults() {
	// The SPEC §3 default cookie __Host-stepgate cannot work on the SPEC
	// default http:// public_url (a __Host- cookie must be Secure), so
	// when the cookie is left to its default on http it becomes stepgate.
	_, inFile := c.meta.lines["second_factor.cookie"]
	_, inEnv := c.meta.env["second_factor.cookie"]
	if !inFile && !inEnv && c.SecondFactor.Cookie == defaultCookie && strings.HasPrefix(strings.ToLower(c.Server.PublicURL), "http://") {
		c.SecondFactor.Cookie = "stepgate"
	}
}

// secretSource names the key a secret came from, for messages.
func (c *Config) secretSource(key, fileKey string) string {
	if _, ok := c.meta.env[fileKey]; ok {
		return fileKey
	}
	if _, ok := c.meta.env[key]; ok {
		return key
	}
	if _, f := c.secretField(key); *f != "" {
		return fileKey
	}
	return key
}
