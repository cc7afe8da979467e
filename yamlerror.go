package main

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// yaml.v3's syntax errors name the line where the parser gave up, which is
// often far from the mistake ("line 34: did not find expected '-'
// indicator" for a key mis-indented on line 51), and they never mention
// tabs or quoting. yamlSyntaxProblem finds the common mistakes in the text
// itself and reports the line to fix, with a hint, in the same
// file:line: message form as every other problem; yaml's own words
// follow in parentheses.

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlSyntaxProblem turns a yaml.Unmarshal error on raw into a Problem.
func yamlSyntaxProblem(file string, raw []byte, err error) Problem {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	lines := strings.Split(string(raw), "\n")
	if l, hint := findYAMLMistake(lines); l > 0 {
		return Problem{File: file, Line: l, Msg: fmt.Sprintf("%s (YAML: %s)", hint, msg)}
	}
	return Problem{File: file, Line: line, Msg: "YAML syntax: " + msg}
}

// findYAMLMistake returns the first line (1-based) with a tab in its
// indentation, a backslash escape YAML does not know inside double
// quotes, a quote left open, or an indentation that fits no enclosing
// section, and what to do about it; 0 when it sees none.
func findYAMLMistake(lines []string) (int, string) {
	for i, l := range lines {
		ind := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if strings.Contains(ind, "\t") && strings.TrimSpace(l) != "" {
			return i + 1, "a tab in the indentation: YAML indents with spaces only; replace the tab with spaces"
		}
	}
	for i, l := range lines {
		if esc, ok := badEscape(l); ok {
			return i + 1, fmt.Sprintf(`"%s" is not an escape YAML knows inside double quotes; write the value in single quotes ('^/api\.v1', where a backslash is just a backslash) or double the backslash ("^/api\\.v1")`, esc)
		}
	}
	for i, l := range lines {
		if q := openQuote(l); q != 0 {
			return i + 1, fmt.Sprintf("the value's opening %c has no closing %c on this line: close it (and inside single quotes write '' for a quote)", q, q)
		}
	}
	return badIndent(lines)
}

// badEscape finds, in the double-quoted scalars of line l (outside a
// comment), a backslash escape that YAML 1.2 §5.7 does not define, such as
// "\." or "\d" from a regex.
func badEscape(l string) (string, bool) {
	in := false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case !in && c == '#' && (i == 0 || l[i-1] == ' '):
			return "", false
		case !in && c == '\'':
			// Skip a single-quoted scalar: backslashes mean nothing there.
			j := strings.IndexByte(l[i+1:], '\'')
			if j < 0 {
				return "", false
			}
			i += j + 1
		case c == '"':
			in = !in
		case in && c == '\\' && i+1 < len(l):
			if !strings.ContainsRune(`0abt	nvfre "/\N_LPxuU`, rune(l[i+1])) {
				return l[i : i+2], true
			}
			i++
		}
	}
	return "", false
}

// openQuote reports the quote character a line opens a flow scalar with
// and never closes (outside comments), or 0. A value spread over lines in
// quotes is legal YAML but rare in a config; this only runs after yaml
// has already refused the file.
func openQuote(l string) byte {
	t := strings.TrimSpace(l)
	if strings.HasPrefix(t, "#") {
		return 0
	}
	var q byte
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case q == 0 && c == '#' && (i == 0 || l[i-1] == ' '):
			return 0
		case q == 0 && (c == '"' || c == '\'') && (i == 0 || strings.ContainsRune(" :[{,-", rune(l[i-1]))):
			q = c
		case q == '"' && c == '\\':
			i++
		case q == '\'' && c == '\'' && i+1 < len(l) && l[i+1] == '\'':
			i++
		case q != 0 && c == q:
			q = 0
		}
	}
	return q
}

// badIndent walks the block structure by indentation and returns the
// first line whose indentation fits it nowhere: deeper than the line
// above when that line opens no section, between the levels of the
// sections around it, or a key at the level of list items.
func badIndent(lines []string) (int, string) {
	var stack []level
	opens := false // the previous line opens a section ("key:" or "-")
	scalar := -1   // indentation of a line opening a block scalar (| or >)
	flow := 0      // depth of [ and { left open on earlier lines
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") || t == "---" {
			continue
		}
		ind := len(l) - len(strings.TrimLeft(l, " "))
		if scalar >= 0 {
			if ind > scalar {
				continue
			}
			scalar = -1
		}
		if flow > 0 {
			flow += flowDepth(t)
			continue
		}
		item := t == "-" || strings.HasPrefix(t, "- ")
		switch {
		case len(stack) == 0:
			stack = append(stack, level{indent: ind})
		case ind > stack[len(stack)-1].indent:
			if !opens {
				return i + 1, fmt.Sprintf("this line is indented more (%d spaces) than the line above, which does not open a section: indent it like the keys beside it", ind)
			}
			stack = append(stack, level{indent: ind})
		default:
			inner := -1
			for len(stack) > 1 && stack[len(stack)-1].indent > ind {
				inner = stack[len(stack)-1].indent
				stack = stack[:len(stack)-1]
			}
			if top := stack[len(stack)-1]; top.indent != ind {
				around := fmt.Sprintf("%d", top.indent)
				if inner >= 0 {
					around += fmt.Sprintf(" or %d", inner)
				}
				return i + 1, fmt.Sprintf("this line's indentation (%d spaces) matches no section above it: indent it like the keys it belongs with (%s spaces)", ind, around)
			}
		}
		top := &stack[len(stack)-1]
		switch {
		case item:
			top.seq = true
		case top.seq:
			return i + 1, fmt.Sprintf("this key is at the indentation of the list items above (%d spaces) but is not an item: indent it under the item (%d spaces), or start a new item with '- '", ind, ind+2)
		}
		body := t
		if item {
			// An item's mapping continues at the indentation of its text.
			body = strings.TrimSpace(strings.TrimPrefix(t, "-"))
			if body != "" {
				stack = append(stack, level{indent: ind + len(t) - len(body)})
			}
		}
		body = stripComment(body)
		opens = item && body == "" || strings.HasSuffix(body, ":")
		if strings.HasSuffix(body, "|") || strings.HasSuffix(body, ">") || strings.HasSuffix(body, "|-") || strings.HasSuffix(body, ">-") {
			scalar = ind
		}
		flow = flowDepth(body)
		if flow < 0 {
			flow = 0
		}
	}
	return 0, ""
}

// level is one open block in badIndent.
type level struct {
	indent int
	seq    bool // holds "- " items
}

// stripComment drops a trailing " # comment" outside quotes.
func stripComment(s string) string {
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q == 0 && c == '#' && (i == 0 || s[i-1] == ' '):
			return strings.TrimSpace(s[:i])
		case q == 0 && (c == '"' || c == '\''):
			q = c
		case q != 0 && c == q:
			q = 0
		}
	}
	return s
}

// flowDepth is the number of [ and { a line leaves open (outside quotes).
func flowDepth(s string) int {
	d := 0
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q == 0 && (c == '"' || c == '\''):
			q = c
		case q != 0 && c == q:
			q = 0
		case q == 0 && (c == '[' || c == '{'):
			d++
		case q == 0 && (c == ']' || c == '}'):
			d--
		}
	}
	return d
}

// sectionsWith lists, sorted, the sections of Config (such as "otp") that
// have a key named k, for a top-level key that belongs in one.
func sectionsWith(k string) []string {
	var out []string
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || !f.IsExported() || f.Type.Kind() != reflect.Struct || f.Type == durationType {
			continue
		}
		for j := range f.Type.NumField() {
			if f.Type.Field(j).Tag.Get("mapstructure") == k {
				out = append(out, tag)
			}
		}
	}
	sort.Strings(out)
	return out
}

// misplacedHint is the hint for an unknown top-level key k that is a key
// of some section: the section of the key just before it first (it was
// most likely meant to be indented under that one).
func misplacedHint(k, before string) string {
	secs := sectionsWith(k)
	if len(secs) == 0 {
		return ""
	}
	for i, s := range secs {
		if s == before {
			secs[0], secs[i] = secs[i], secs[0]
		}
	}
	full := make([]string, len(secs))
	for i, s := range secs {
		full[i] = s + "." + k
	}
	return fmt.Sprintf(" (did you mean %s? indent it under %s:)", strings.Join(full, " or "), secs[0])
}
