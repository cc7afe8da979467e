package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// secretPairs are the secrets that may be given inline or as a file (SPEC
// §2: "every secret can also be read from a file").
var secretPairs = []struct{ key, fileKey string }{
	{"second_factor.secret", "second_factor.secret_file"},
	{"identity.jwt.hmac_secret", "identity.jwt.hmac_secret_file"},
	{"mail.smtp.password", "mail.smtp.password_file"},
	{"store.redis.password", "store.redis.password_file"},
	{"factors.encryption_key", "factors.encryption_key_file"},
	{"factors.postgres.dsn", "factors.postgres.dsn_file"},
}

// maxConfigFile bounds the config file and every *_file read.
const maxConfigFile = 4 << 20

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
		return nil, &ConfigError{Problems: []Problem{yamlSyntaxProblem(path, raw, err)}}
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

	v := newViper()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(cleaned)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	applyEnv(v, getenv, cfg, ps)

	// Exact decoding is the backstop of checkNode: any key it let through
	// that Config does not have is still an error.
	if err := decodeExact(v, cfg); err != nil {
		ps.add("config", "%v", err)
		return nil, ps.err()
	}
	cfg.resolveSecrets(ps)
	return cfg, cfg.finish(ps)
}

// newViper is a viper holding every default; it is the one viper set-up,
// shared by load and defaultConfig.
func newViper() *viper.Viper {
	v := viper.New()
	for k, d := range configDefaults {
		v.SetDefault(k, d)
	}
	return v
}

// decodeExact decodes v into cfg; a key Config does not have is an error.
func decodeExact(v *viper.Viper, cfg *Config) error {
	hook := viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	))
	return v.UnmarshalExact(cfg, hook)
}

// defaultConfig is the Config of an empty file named name, with no
// environment: every default, not validated yet. A caller that sets values
// in code (the demo) calls finish on it, as load does.
func defaultConfig(name string) (*Config, error) {
	cfg := &Config{meta: configMeta{file: name, lines: map[string]int{}, env: map[string]string{}}}
	if err := decodeExact(newViper(), cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// finish applies the derived defaults and validates c, adding to ps, and
// returns every problem found.
func (c *Config) finish(ps *problems) error {
	c.applyDerivedDefaults()
	c.validate(ps)
	c.warnings = ps.warnings
	return ps.err()
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
				hint := suggest(k.Value, fields)
				if path == "" {
					// A section's key at the top level: most often a line
					// that lost its indentation.
					before := ""
					if i >= 2 {
						before = n.Content[i-2].Value
					}
					if h := misplacedHint(k.Value, before); h != "" {
						hint = h
					}
				}
				ps.add(p, "unknown key%s", hint)
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
	case "factors.encryption_key":
		return &c.Factors.EncryptionKey, &c.Factors.EncryptionKeyFile
	case "factors.postgres.dsn":
		return &c.Factors.Postgres.DSN, &c.Factors.Postgres.DSNFile
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
