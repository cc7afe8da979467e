package proxy

import "strings"

// isMethodKey reports whether a decoded query, form or JSON key may be
// read as a method override by some framework (the table in override.go):
// `_method` or `X-HTTP-Method-Override`, ASCII case ignored, in any of
// these readings of the key:
//
//   - as decoded, cut at a '[' after the first byte: PHP arrays
//     (`_method[]`), Rack 3's and qs's nested keys;
//   - as PHP's php_register_variable_ex reads it: the name ends at a NUL
//     byte (C strings), leading spaces are dropped, and ' ' and '.' before
//     the first '[' become '_';
//   - as Rack 2's normalize_params reads it: leading '[' and ']' dropped,
//     then cut at the next '[' or ']';
//   - a one-byte spelling of '_' (' ', '.', '[') before "method", up to a
//     NUL, kept from the earlier, looser rule.
//
// Over-matching can only make a decision stricter.
func isMethodKey(k string) bool {
	if overrideName(cutBracket(k)) || overrideName(phpName(k)) || overrideName(rack2Name(k)) {
		return true
	}
	if i := strings.IndexByte(k, 0); i >= 0 {
		k = k[:i]
	}
	return len(k) == len("_method") && strings.IndexByte(" .[", k[0]) >= 0 && strings.EqualFold(k[1:], "method")
}

// overrideName reports the names frameworks read an override from:
// `_method` (Rails/Rack, Laravel/Symfony, Spring HiddenHttpMethodFilter,
// Express method-override's usual getter, django-method-override) and
// `X-HTTP-Method-Override` (ASP.NET MVC's GetHttpMethodOverride reads it
// from the form and the query too, ASP.NET Core's middleware from a form
// field).
func overrideName(n string) bool {
	return strings.EqualFold(n, "_method") || strings.EqualFold(n, "x-http-method-override")
}

// cutBracket cuts k at a '[' after its first byte.
func cutBracket(k string) string {
	if i := strings.IndexByte(k, '['); i > 0 {
		return k[:i]
	}
	return k
}

// phpName is the variable name PHP registers for key k
// (main/php_variables.c php_register_variable_ex): up to a NUL, leading
// spaces dropped, ' ' and '.' turned into '_' up to the first '[', where
// the name ends.
func phpName(k string) string {
	if i := strings.IndexByte(k, 0); i >= 0 {
		k = k[:i]
	}
	k = strings.TrimLeft(k, " ")
	if i := strings.IndexByte(k, '['); i >= 0 {
		k = k[:i]
	}
	if strings.IndexByte(k, ' ') < 0 && strings.IndexByte(k, '.') < 0 {
		return k
	}
	b := []byte(k)
	for i, c := range b {
		if c == ' ' || c == '.' {
			b[i] = '_'
		}
	}
	return string(b)
}

// rack2Name is the top-level key Rack 2 reads from k
// (Rack::QueryParser#normalize_params, /\A[\[\]]*([^\[\]]+)\]*/).
func rack2Name(k string) string {
	k = strings.TrimLeft(k, "[]")
	if i := strings.IndexAny(k, "[]"); i >= 0 {
		k = k[:i]
	}
	return k
}

// phpDispositionNames appends the name= values of a multipart part's
// Content-Disposition as PHP's rfc1867 parser reads them: the header is
// split at ';' outside '"' or '\” quotes, a pair's key is compared with
// "name" ignoring case, and the value is unquoted from '"' or '\” with
// backslash escapes (php_ap_getword, php_ap_getword_conf). Go's
// mime.ParseMediaType reads name='_method' as the token "'_method'".
func phpDispositionNames(cd string, dst []string) []string {
	for cd != "" {
		var pair string
		pair, cd = phpGetword(cd, ';')
		pair = strings.TrimLeft(pair, " \t\r\n\v\f")
		if strings.IndexByte(pair, '=') < 0 {
			continue
		}
		key, val := phpGetword(pair, '=')
		if strings.EqualFold(key, "name") {
			dst = append(dst, phpGetwordConf(val))
		}
	}
	return dst
}

// phpGetword splits s at the first stop byte outside quotes.
func phpGetword(s string, stop byte) (word, rest string) {
	i := 0
	for i < len(s) && s[i] != stop {
		q := s[i]
		i++
		if q != '"' && q != '\'' {
			continue
		}
		for i < len(s) && s[i] != q {
			if s[i] == '\\' && i+1 < len(s) && s[i+1] == q {
				i++
			}
			i++
		}
		if i < len(s) {
			i++
		}
	}
	if i < len(s) {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// phpGetwordConf unquotes a value: quoted with '"' or '\” and backslash
// escapes, or up to the first white space.
func phpGetwordConf(s string) string {
	s = strings.TrimLeft(s, " \t\r\n\v\f")
	if s == "" {
		return ""
	}
	if q := s[0]; q == '"' || q == '\'' {
		var b strings.Builder
		for i := 1; i < len(s) && s[i] != q; i++ {
			if s[i] == '\\' && i+1 < len(s) && (s[i+1] == q || s[i+1] == '\\') {
				i++
			}
			b.WriteByte(s[i])
		}
		return b.String()
	}
	if i := strings.IndexAny(s, " \t\r\n\v\f"); i >= 0 {
		s = s[:i]
	}
	return s
}
