package main

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/spf13/viper"
)

// This file is the environment half of loading (SPEC §2): STEPGATE_*
// variables override the file's keys.

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

// environKey is the one name getenv answers that is not a variable: the
// names of every variable set, one per line, so that load can warn about a
// STEPGATE_ variable it does not know (a typo that would otherwise be
// ignored in silence). No variable can have this name (it holds a NUL).
// processEnv answers it from the process; a getenv that does not (an
// empty answer) just means no such warnings.
const environKey = "\x00environ"

// processEnv is os.Getenv that also answers environKey.
func processEnv(k string) string {
	if k != environKey {
		return os.Getenv(k)
	}
	var names []string
	for _, kv := range os.Environ() {
		if name, _, ok := strings.Cut(kv, "="); ok && name != "" {
			names = append(names, name)
		}
	}
	return strings.Join(names, "\n")
}

// notConfigEnv are STEPGATE_ variables that are not config keys: the
// test suite's switches (STEPGATE_REQUIRE_REDIS, …) and screenshot
// directories, read by tests, never by the binary.
var notConfigEnv = []string{"STEPGATE_REQUIRE_", "STEPGATE_DEMO_SCREENSHOTS", "STEPGATE_PAGE_SCREENSHOTS"}

// warnUnknownEnv warns about each STEPGATE_ variable that names no key,
// with the closest known name.
func warnUnknownEnv(getenv func(string) string, known map[string]bool, ps *problems) {
	list := getenv(environKey)
	if list == "" {
		return
	}
	names := strings.Split(list, "\n")
	sort.Strings(names)
	for _, name := range names {
		if !strings.HasPrefix(name, "STEPGATE_") || known[name] || getenv(name) == "" {
			continue
		}
		skip := false
		for _, p := range notConfigEnv {
			skip = skip || strings.HasPrefix(name, p)
		}
		if skip {
			continue
		}
		best, bestD := "", 4
		for k := range known {
			if d := editDistance(name, k); d < bestD || (d == bestD && k < best) {
				best, bestD = k, d
			}
		}
		hint := ""
		if best != "" {
			hint = fmt.Sprintf(" (did you mean %s?)", best)
		}
		ps.warnings = append(ps.warnings, Problem{Key: name,
			Msg: fmt.Sprintf("environment variable names no config key, so it is ignored%s; lists of rules and tests cannot be set from the environment", hint)})
	}
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
	known := make(map[string]bool, len(keys))
	for _, k := range keys {
		known[envName(k)] = true
	}
	warnUnknownEnv(getenv, known, ps)
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
