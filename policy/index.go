package policy

import "strings"

// The index makes matching cost independent of the number of rules in the
// common case (SPEC §4): rules are filed in a trie of path segments under
// the literal segments their paths start with. A request walks the trie
// along its path, and only the rules filed at the visited nodes are tried.
// Rules whose paths start with a wildcard, and regexes without a literal
// anchored prefix, sit at the root and are tried for every request.
//
// Within a node, rules whose hosts are all exact names (the common
// host-wide rule, hosts: [app.example.com], paths: ["/**"], sits at the
// root) are filed a second time by host: under each normalised name in the
// node's byHost map, so a request tries only the rules for its own host.
// Rules without hosts, or with any wildcard or IP-literal host, stay in
// the node's plain list and are tried as before; IP literals compare as
// addresses (::1 is [0:0:0:0:0:0:0:1]), which a name lookup cannot do.
// Methods are not indexed: they are checked on the candidates.

// maxIndexDepth bounds the trie depth, so a walk visits at most
// maxIndexDepth+1 nodes; deeper literal prefixes are filed at this depth.
const maxIndexDepth = 16

// node is one trie node.
type node struct {
	children map[string]*node // by canonical (lower-case when folding) segment
	// rules lists, ascending, the rules filed here that byHost does not
	// hold: without hosts, or with a wildcard or IP-literal host.
	rules []int32
	// byHost lists, ascending per name, the rules filed here whose hosts
	// are all exact names, under each of their names as hostPat holds them
	// (lower-case, no trailing dot). Nil when the node has no such rule.
	byHost map[string][]int32
}

// hostKeyMax bounds the names byHost holds: validHostname refuses longer
// ones, so a longer request host has no entry and needs no lookup.
const hostKeyMax = 253

// exactHosts reports whether r has hosts and all of them are exact names,
// so that r matches a request host exactly when one of its names equals
// the host lower-cased (hostPat.match).
func (r *rule) exactHosts() bool {
	for i := range r.hosts {
		if h := &r.hosts[i]; h.wildcard || h.ip.IsValid() {
			return false
		}
	}
	return len(r.hosts) > 0
}

// file adds rule i to the node's candidates, once.
func (n *node) file(r *rule, i int32) {
	if !r.exactHosts() {
		n.rules = appendOnce(n.rules, i)
		return
	}
	if n.byHost == nil {
		n.byHost = make(map[string][]int32)
	}
	for _, h := range r.hosts {
		n.byHost[h.name] = appendOnce(n.byHost[h.name], i)
	}
}

// appendOnce appends i unless it is already last: rules are filed in
// order, so a rule filed twice (two globs under one node, or two spellings
// of one host) would be last.
func appendOnce(list []int32, i int32) []int32 {
	if k := len(list); k > 0 && list[k-1] == i {
		return list
	}
	return append(list, i)
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
			n.file(r, int32(i))
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

// hostKey writes the request host (from requestHost) lower-cased into buf,
// the form byHost is keyed by, as hostPat.match compares (ASCII only). It
// returns nil for a host longer than any name byHost can hold.
func hostKey(buf *[hostKeyMax]byte, host string) []byte {
	if len(host) > len(buf) {
		return nil
	}
	b := buf[:len(host)]
	for i := 0; i < len(host); i++ {
		b[i] = lower(host[i])
	}
	return b
}

// stats reports the number of nodes and the longest candidate list a
// request can meet at one node (the plain list plus one host's list), for
// tests and benchmarks.
func (n *node) stats() (nodes, longest int) {
	byHost := 0
	for _, l := range n.byHost {
		byHost = max(byHost, len(l))
	}
	nodes, longest = 1, len(n.rules)+byHost
	for _, c := range n.children {
		cn, cl := c.stats()
		nodes += cn
		longest = max(longest, cl)
	}
	return nodes, longest
}
