package main

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

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
	// Label, when set, is printed instead of Key: it names a rule by its
	// name and quotes the offending entry (`rule "admin": paths[0]
	// "/files/**x"`), which a reader finds faster than an index.
	Label string
	Msg   string
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
	switch {
	case p.Label != "":
		b.WriteString(p.Label)
	case p.Key != "":
		b.WriteString(p.Key)
	}
	if p.Env != "" {
		fmt.Fprintf(&b, " (from %s)", p.Env)
	}
	if p.Label != "" || p.Key != "" || p.Env != "" {
		b.WriteString(": ")
	}
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
	// warnings are things that work but are probably mistakes: check
	// prints them and passes, serve logs them.
	warnings []Problem
}

// has reports whether key already has a problem.
func (ps *problems) has(key string) bool {
	for _, p := range ps.list {
		if p.Key == key {
			return true
		}
	}
	return false
}

// addLabeled is add with a Label printed instead of the key.
func (ps *problems) addLabeled(key, label, format string, args ...any) {
	ps.add(key, format, args...)
	ps.list[len(ps.list)-1].Label = label
}

// warn records a warning at key, with an optional label.
func (ps *problems) warn(key, label, format string, args ...any) {
	p := Problem{File: ps.meta.file, Key: key, Label: label, Msg: fmt.Sprintf(format, args...)}
	if env, ok := ps.meta.env[key]; ok {
		p.Env = env
	} else {
		p.Line = ps.meta.line(key)
	}
	ps.warnings = append(ps.warnings, p)
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

// addOnce adds a labeled problem unless key already has one:
// policy.Compile may find again what validate found first.
func (ps *problems) addOnce(key, label, format string, args ...any) {
	for _, p := range ps.list {
		if p.Key == key {
			return
		}
	}
	ps.addLabeled(key, label, format, args...)
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
