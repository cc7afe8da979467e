package policy

import "strings"

// The index makes matching cost independent of the number of rules in the
// common case (SPEC §4): rules are filed in a trie of path segments under
// the literal segments their paths start with. A request walks the trie
// along its path, and only the rules filed at the visited nodes are tried.
// Rules whose paths start with a wildcard, and regexes without a literal
// anchored prefix, sit at the root and are tried for every request.
// Hosts and methods are not indexed: they are checked on the candidates.

// maxIndexDepth bounds the trie depth, so a walk visits at most
// maxIndexDepth+1 nodes; deeper literal prefixes are filed at this depth.
const maxIndexDepth = 16

// node is one trie node.
type node struct {
	children map[string]*node // by canonical (lower-case when folding) segment
	rules    []int32          // indices of rules filed here, ascending
}

func (n *node) child(seg string) *node {
	if n.children == nil {
		n.children = make(map[string]*node)
	}
	c := n.children[seg]
	if c == nil {
		c = &node{}
		n.children[seg] = c
	}
	return c
}

// buildIndex files every compiled rule. Rules are visited in order, so
// each node's list is ascending; a rule with several globs under the same
// node is filed there once.
func buildIndex(rules []rule, src []Rule, fold bool) *node {
	root := &node{}
	for i := range rules {
		r := &rules[i]
		var prefixes [][]string
		if r.re != nil {
			prefixes = append(prefixes, regexPrefix(src[i].Regex, fold))
		}
		for j := range r.globs {
			prefixes = append(prefixes, r.globs[j].literalPrefix())
		}
		for _, pre := range prefixes {
			n := root
			for d, seg := range pre {
				if d == maxIndexDepth {
					break
				}
				n = n.child(seg)
			}
			if k := len(n.rules); k == 0 || n.rules[k-1] != int32(i) {
				n.rules = append(n.rules, int32(i))
			}
		}
	}
	return root
}

// lookup finds the child for a path segment. With fold the segment is
// lowered into a stack buffer; the map lookup with string(bytes) does not
// allocate. Segments longer than the buffer (rare) are lowered on the heap.
func (n *node) lookup(seg string, fold bool) *node {
	if n.children == nil {
		return nil
	}
	if !fold {
		return n.children[seg]
	}
	var buf [128]byte
	if len(seg) > len(buf) {
		return n.children[strings.ToLower(seg)]
	}
	b := buf[:len(seg)]
	for i := 0; i < len(seg); i++ {
		b[i] = lower(seg[i])
	}
	return n.children[string(b)]
}

// stats reports the number of nodes and the longest candidate list, for
// tests and benchmarks.
func (n *node) stats() (nodes, longest int) {
	nodes, longest = 1, len(n.rules)
	for _, c := range n.children {
		cn, cl := c.stats()
		nodes += cn
		longest = max(longest, cl)
	}
	return nodes, longest
}
