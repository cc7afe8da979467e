package proxy

import "strings"

// forwardedWithHost returns the Forwarded header lines vs (RFC 7239 §4)
// with the value of every host= pair replaced by host, quoted, or the pair
// removed when host is empty. ok is false when a line does not parse; the
// caller then drops the header, so that no host= it could not see reaches
// the upstream. Spring's ForwardedHeaderFilter and ASP.NET read host= from
// Forwarded before X-Forwarded-Host.
func forwardedWithHost(vs []string, host string) (out []string, ok bool) {
	out = make([]string, 0, len(vs))
	for _, v := range vs {
		fv, ok := forwardedLineWithHost(v, host)
		if !ok {
			return nil, false
		}
		if fv != "" {
			out = append(out, fv)
		}
	}
	if len(out) == 0 {
		return nil, false
	}
	return out, true
}

func forwardedLineWithHost(v, host string) (string, bool) {
	var b strings.Builder
	b.Grow(len(v) + len(host))
	n := len(v)
	i := 0
	for {
		i = skipOWS(v, i)
		if i >= n {
			break
		}
		if c := v[i]; c == ';' || c == ',' {
			b.WriteByte(c)
			if c == ',' {
				b.WriteByte(' ')
			}
			i++
			continue
		}
		j := i
		for j < n && isTokenChar(v[j]) {
			j++
		}
		if j == i || j >= n || v[j] != '=' {
			return "", false
		}
		key := v[i:j]
		j++ // '='
		end := j
		if end < n && v[end] == '"' {
			end++
			for end < n && v[end] != '"' {
				if v[end] == '\\' {
					end++
				}
				end++
			}
			if end >= n {
				return "", false // unterminated quoted-string
			}
			end++
		} else {
			for end < n && isTokenChar(v[end]) {
				end++
			}
			if end == j {
				return "", false // empty value
			}
		}
		switch {
		case !strings.EqualFold(key, "host"):
			b.WriteString(v[i:end])
		case host != "":
			b.WriteString(`host="`)
			b.WriteString(host) // ParseHost accepted it: no '"' or '\\'
			b.WriteByte('"')
		}
		i = skipOWS(v, end)
		if i < n && v[i] != ';' && v[i] != ',' {
			return "", false
		}
	}
	return strings.TrimRight(b.String(), " "), true
}

func skipOWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// isTokenChar reports an RFC 9110 §5.6.2 tchar.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
