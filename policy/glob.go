package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Globs match whole path segments (SPEC §4): "*" is exactly one non-empty
// segment, "**" is zero or more segments, anything else is a literal.

type segKind uint8

const (
	segLit  segKind = iota // a literal segment, canonical (and lower-case when folding)
	segStar                // "*": exactly one non-empty segment
	segAny                 // "**": zero or more segments
)

type globSeg struct {
	kind segKind
	lit  string // segLit only
}

// glob is a compiled path glob.
type glob struct {
	src  string    // as written in the config, for messages
	segs []globSeg // the segments; a trailing '/' is ignored
	// needle is "/" + the longest literal segment after the first
	// wildcard, or "". A matching path must contain it, which a substring
	// search checks much faster than the segment walk; the index has
	// already checked the literals before the first wildcard.
	needle string
}

// compileGlob compiles s. Literal segments are canonicalised with the rules
// of ParseTarget, so "/%61dmin" protects "/admin"; a glob that no canonical
// request path could ever equal is a config error. fold lowers literals for
// case-insensitive matching.
func compileGlob(s string, fold bool) (glob, error) {
	switch {
	case s == "":
		return glob{}, errors.New("is empty; a glob starts with '/'")
	case s[0] != '/':
		return glob{}, errors.New("does not start with '/'")
	case strings.IndexByte(s, '?') >= 0:
		return glob{}, errors.New("contains '?', which starts the query; the query never takes part in matching")
	case strings.IndexByte(s, ';') >= 0:
		return glob{}, errors.New("contains ';', which starts path parameters; they are removed before matching, so it could never match")
	}
	cp, why := canonicalPath(s)
	if why != "" {
		return glob{}, fmt.Errorf("is not a path a request could have: %s", why)
	}
	g := glob{src: s}
	for pos := 0; ; {
		seg, next, ok := nextSeg(cp, pos)
		if !ok {
			break
		}
		pos = next
		switch {
		case seg == "*":
			g.segs = append(g.segs, globSeg{kind: segStar})
		case seg == "**":
			g.segs = append(g.segs, globSeg{kind: segAny})
		case strings.IndexByte(seg, '*') >= 0:
			return glob{}, fmt.Errorf("segment %q mixes * with other characters; use * or ** as a whole segment", seg)
		default:
			if fold {
				seg = strings.ToLower(seg)
			}
			g.segs = append(g.segs, globSeg{kind: segLit, lit: seg})
		}
	}
	wild := false
	for _, sg := range g.segs {
		if sg.kind != segLit {
			wild = true
		} else if wild && len(sg.lit)+1 > len(g.needle) {
			g.needle = "/" + sg.lit
		}
	}
	return g, nil
}

// nextSeg returns the path segment that starts at or after pos, skipping
// '/' runs, and the position after it; ok is false when none is left. Empty
// segments, such as after a trailing '/', are never returned.
func nextSeg(p string, pos int) (seg string, next int, ok bool) {
	for pos < len(p) && p[pos] == '/' {
		pos++
	}
	if pos >= len(p) {
		return "", pos, false
	}
	end := strings.IndexByte(p[pos:], '/')
	if end < 0 {
		return p[pos:], len(p), true
	}
	return p[pos : pos+end], pos + end, true
}

// literalPrefix returns the literal segments the glob starts with.
func (g *glob) literalPrefix() []string {
	var pre []string
	for _, s := range g.segs {
		if s.kind != segLit {
			break
		}
		pre = append(pre, s.lit)
	}
	return pre
}

// match reports whether the canonical match path p matches g. With fold, p
// is compared ASCII-case-insensitively to the (lower-case) literals. It
// does not allocate; it is the classic single-backtrack wildcard algorithm
// over segments, with "**" as the star: O(len(segs) * segments) at worst.
func (g *glob) match(p string, fold bool) bool {
	if !fold && g.needle != "" && !strings.Contains(p, g.needle) {
		return false
	}
	gi, pos := 0, 0
	starG, starPos := -1, 0
	for {
		seg, next, ok := nextSeg(p, pos)
		if !ok {
			break
		}
		if gi < len(g.segs) {
			switch s := g.segs[gi]; s.kind {
			case segAny:
				starG, starPos = gi, pos
				gi++
				continue
			case segStar:
				gi, pos = gi+1, next
				continue
			case segLit:
				if segEqual(seg, s.lit, fold) {
					gi, pos = gi+1, next
					continue
				}
			}
		}
		if starG < 0 {
			return false
		}
		// Let the last "**" absorb one more segment and retry after it.
		_, starPos, _ = nextSeg(p, starPos)
		gi, pos = starG+1, starPos
	}
	for gi < len(g.segs) && g.segs[gi].kind == segAny {
		gi++
	}
	return gi == len(g.segs)
}

// segEqual compares a path segment to a literal; with fold the literal is
// lower-case and the segment is compared ignoring ASCII case.
func segEqual(seg, lit string, fold bool) bool {
	if !fold {
		return seg == lit
	}
	if len(seg) != len(lit) {
		return false
	}
	for i := 0; i < len(seg); i++ {
		if lower(seg[i]) != lit[i] {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}
