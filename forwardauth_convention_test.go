package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Traefik and Envoy are not packaged in Debian, so their configurations in
// deploy/ cannot run in the tests. These tests read those files and run
// their settings through emulations of the proxies' documented
// forward-auth behaviour, written from their sources (Traefik
// pkg/middlewares/auth/forward.go, Envoy ext_authz_http_impl.cc), in front
// of the real stepgate and upstream: they check the header conventions
// stepgate's endpoints rely on and the settings the files must carry.

// readYAML parses one YAML file of deploy/.
func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc
}

// hopHeaders are removed by both proxies before they call the service.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// passOn writes an auth service's answer to the client as both proxies
// do for a non-2xx: status, headers and body.
func passOn(w http.ResponseWriter, res *http.Response, location string) {
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	if location != "" {
		w.Header().Set("Location", location)
	}
	w.WriteHeader(res.StatusCode)
	io.Copy(w, res.Body)
}

// proxyTo forwards r to target with its request target as it came.
func proxyTo(target string) *httputil.ReverseProxy {
	u, _ := url.Parse(target)
	return &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() }}
}

// traefikLike emulates Traefik's routers, the headers middleware and
// forwardAuth as deploy/traefik/dynamic.yaml configures them.
func traefikLike(t *testing.T, s *faStack) http.Handler {
	doc := readYAML(t, "deploy/traefik/dynamic.yaml")
	fa, _ := get(doc, "http", "middlewares", "stepgate", "forwardAuth").(map[string]any)
	address, _ := fa["address"].(string)
	if !strings.HasSuffix(address, "/.stepup/authz/forward-auth") {
		t.Fatalf("forwardAuth.address %q: want stepgate's /.stepup/authz/forward-auth", address)
	}
	if fa["trustForwardHeader"] != false {
		t.Fatalf("forwardAuth.trustForwardHeader: got %v; want false (a client's X-Forwarded-* must never be believed)", fa["trustForwardHeader"])
	}
	re, err := regexp.Compile(fa["authResponseHeadersRegex"].(string))
	if err != nil || !re.MatchString("X-Stepup-User") || !re.MatchString("X-Stepup-Token") || re.MatchString("Set-Cookie") {
		t.Fatalf("forwardAuth.authResponseHeadersRegex %q: want every X-Stepup-* and nothing else", fa["authResponseHeadersRegex"])
	}
	strip, _ := get(doc, "http", "middlewares", "stepgate-strip", "headers", "customRequestHeaders").(map[string]any)
	if mw := get(doc, "http", "routers", "app", "middlewares"); !slices.Equal(toStrings(mw), []string{"stepgate-strip", "stepgate"}) {
		t.Fatalf("routers.app.middlewares: got %v; want [stepgate-strip stepgate]", mw)
	}
	if rule, _ := get(doc, "http", "routers", "stepgate-pages", "rule").(string); !strings.Contains(rule, "PathPrefix(`/.stepup/`)") || !strings.Contains(rule, "!PathPrefix(`/.stepup/authz/`)") {
		t.Fatalf("routers.stepgate-pages.rule %q: want /.stepup/ without /.stepup/authz/", rule)
	}
	authURL := "http://" + s.sg.listen + strings.TrimPrefix(address, "http://127.0.0.1:8080")
	pages, app := proxyTo("http://"+s.sg.listen), proxyTo(s.up.URL)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.stepup/") && !strings.HasPrefix(r.URL.Path, "/.stepup/authz/") {
			pages.ServeHTTP(w, r)
			return
		}
		for k, v := range strip {
			if v == "" {
				r.Header.Del(k) // an empty customRequestHeaders value removes
			}
		}
		// forwardAuth: GET with the client's headers, X-Forwarded-* set by
		// Traefik itself (trustForwardHeader: false).
		fr, _ := http.NewRequest(http.MethodGet, authURL, nil)
		fr.Header = r.Header.Clone()
		for _, h := range hopHeaders {
			fr.Header.Del(h)
		}
		fr.Header.Set("X-Forwarded-Method", r.Method)
		fr.Header.Set("X-Forwarded-Proto", "http")
		fr.Header.Set("X-Forwarded-Host", r.Host)
		fr.Header.Set("X-Forwarded-Uri", r.URL.RequestURI())
		fr.Header.Set("X-Forwarded-For", strings.Split(r.RemoteAddr, ":")[0])
		res, err := http.DefaultTransport.RoundTrip(fr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer res.Body.Close()
		if res.StatusCode < 200 || res.StatusCode >= 300 {
			// Traefik sets Location to res.Location(): a relative one is
			// resolved against the auth request's URL.
			var loc string
			if u, err := res.Location(); err == nil {
				loc = u.String()
			}
			passOn(w, res, loc)
			return
		}
		for k := range r.Header {
			if re.MatchString(k) {
				delete(r.Header, k)
			}
		}
		for k, v := range res.Header {
			if re.MatchString(k) {
				r.Header[k] = v
			}
		}
		app.ServeHTTP(w, r)
	})
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

// TestForwardAuthTraefikConvention runs deploy/traefik/dynamic.yaml's
// settings through an emulation of Traefik's forwardAuth.
func TestForwardAuthTraefikConvention(t *testing.T) {
	s := startFAStack(t)
	srv := httptest.NewServer(traefikLike(t, s))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	base := "http://" + addr
	// /.stepup/authz/ is on the app router: stepgate decides it like any
	// path (policies.default authenticate: 401 without identity).
	t.Run("cases", func(t *testing.T) { faProxyCases(t, s, addr, base, http.StatusUnauthorized) })
	t.Run("browser flow", func(t *testing.T) {
		faStepUpFlow(t, s, base, base+"/.stepup/challenge?rd=%2Fadmin%2Fx", false)
	})
}

// envoyLike emulates Envoy's routes, header_mutation, underscore handling
// and HTTP ext_authz as deploy/envoy/envoy.yaml configures them.
func envoyLike(t *testing.T, s *faStack) http.Handler {
	doc := readYAML(t, "deploy/envoy/envoy.yaml")
	hcm := get(doc, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config")
	if a := get(hcm, "common_http_protocol_options", "headers_with_underscores_action"); a != "DROP_HEADER" && a != "REJECT_REQUEST" {
		t.Fatalf("headers_with_underscores_action: got %v; want DROP_HEADER or REJECT_REQUEST", a)
	}
	if a := get(hcm, "path_with_escaped_slashes_action"); a != "KEEP_UNCHANGED" && a != "REJECT_REQUEST" {
		t.Fatalf("path_with_escaped_slashes_action: got %v; want stepgate to see escaped slashes (KEEP_UNCHANGED) or Envoy to refuse them", a)
	}
	filters, _ := get(hcm, "http_filters").([]any)
	var names []string
	var removed []string
	var authz any
	for _, f := range filters {
		name, _ := get(f, "name").(string)
		names = append(names, name)
		switch name {
		case "envoy.filters.http.header_mutation":
			for _, m := range get(f, "typed_config", "mutations", "request_mutations").([]any) {
				removed = append(removed, get(m, "remove").(string))
			}
		case "envoy.filters.http.ext_authz":
			authz = get(f, "typed_config")
		}
	}
	if !slices.Equal(names, []string{"envoy.filters.http.header_mutation", "envoy.filters.http.ext_authz", "envoy.filters.http.router"}) {
		t.Fatalf("http_filters: got %v; want header_mutation, ext_authz, router (the strip must run first)", names)
	}
	for _, h := range []string{"x-stepup-user", "x-stepup-email", "x-stepup-rule", "x-stepup-auth-time", "x-stepup-method", "x-stepup-token", "x-original-url", "x-rewrite-url"} {
		if !slices.Contains(removed, h) {
			t.Fatalf("header_mutation does not remove %s", h)
		}
	}
	if get(authz, "failure_mode_allow") != false {
		t.Fatalf("ext_authz failure_mode_allow: want false (stepgate down must not open the app)")
	}
	prefix, _ := get(authz, "http_service", "path_prefix").(string)
	if prefix != "/.stepup/authz/ext-authz" {
		t.Fatalf("ext_authz path_prefix %q: want /.stepup/authz/ext-authz", prefix)
	}
	allowed := []string{"host", "authorization", "content-length"} // always sent
	for _, p := range get(authz, "http_service", "authorization_request", "allowed_headers", "patterns").([]any) {
		allowed = append(allowed, get(p, "exact").(string))
	}
	for _, h := range []string{"cookie", "accept", "content-type", "x-http-method-override", "x-http-method", "x-method-override", "x-second-factor-token", "x-requested-with"} {
		if !slices.Contains(allowed, h) {
			t.Fatalf("ext_authz allowed_headers lacks %s: stepgate decides on it", h)
		}
	}
	up := get(authz, "http_service", "authorization_response", "allowed_upstream_headers", "patterns", 0, "prefix")
	if up != "x-stepup-" {
		t.Fatalf("allowed_upstream_headers: got %v; want prefix x-stepup-", up)
	}
	pages, app := proxyTo("http://"+s.sg.listen), proxyTo(s.up.URL)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k := range r.Header {
			if strings.Contains(k, "_") {
				delete(r.Header, k)
			}
		}
		switch {
		case strings.HasPrefix(r.URL.Path, "/.stepup/authz/"):
			w.WriteHeader(http.StatusNotFound)
			return
		case strings.HasPrefix(r.URL.Path, "/.stepup/"):
			pages.ServeHTTP(w, r)
			return
		}
		for _, h := range removed {
			r.Header.Del(h)
		}
		// The check: the original method and Host, the original :path
		// after path_prefix, the allowed headers, no body.
		cr, _ := http.NewRequest(r.Method, "http://"+s.sg.listen+prefix+r.RequestURI, http.NoBody)
		cr.URL.Opaque, cr.URL.RawQuery = prefix+r.RequestURI, "" // sent byte for byte
		cr.Host = r.Host
		for k, v := range r.Header {
			if slices.Contains(allowed, strings.ToLower(k)) {
				cr.Header[k] = v
			}
		}
		cr.Header.Set("Content-Length", "0")
		res, err := http.DefaultTransport.RoundTrip(cr)
		if err != nil {
			w.WriteHeader(http.StatusForbidden) // failure_mode_allow: false
			return
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			passOn(w, res, "")
			return
		}
		for k, v := range res.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-stepup-") {
				r.Header[k] = v
			}
		}
		app.ServeHTTP(w, r)
	})
}

// TestForwardAuthEnvoyConvention runs deploy/envoy/envoy.yaml's settings
// through an emulation of Envoy's HTTP ext_authz.
func TestForwardAuthEnvoyConvention(t *testing.T) {
	s := startFAStack(t)
	srv := httptest.NewServer(envoyLike(t, s))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	base := "http://" + addr
	// Envoy is not told the scheme: stepgate's Locations stay relative.
	t.Run("cases", func(t *testing.T) { faProxyCases(t, s, addr, "", http.StatusNotFound) })
	t.Run("browser flow", func(t *testing.T) {
		faStepUpFlow(t, s, base, "/.stepup/challenge?rd=%2Fadmin%2Fx", false)
	})
}

// TestForwardAuthIngressNginx checks that the ingress-nginx annotations
// ask the auth-request endpoint and copy the same headers as the tested
// deploy/nginx/stepgate.conf does by hand.
func TestForwardAuthIngressNginx(t *testing.T) {
	ms := readManifests(t, "deploy/kubernetes")
	ing := find(ms, "Ingress", "app")
	pages := find(ms, "Ingress", "app-stepgate-pages")
	if ing == nil || pages == nil {
		t.Fatal("want Ingress app and app-stepgate-pages")
	}
	ann, _ := get(ing, "metadata", "annotations").(map[string]any)
	const p = "nginx.ingress.kubernetes.io/"
	if u, _ := ann[p+"auth-url"].(string); !strings.HasSuffix(u, ":8080/.stepup/authz/auth-request") {
		t.Errorf("auth-url %q: want the stepgate Service's /.stepup/authz/auth-request", u)
	}
	if si, _ := ann[p+"auth-signin"].(string); !strings.Contains(si, "/.stepup/challenge?rd=$escaped_request_uri") {
		t.Errorf("auth-signin %q: want the challenge with rd=$escaped_request_uri", si)
	}
	got := strings.Split(ann[p+"auth-response-headers"].(string), ",")
	conf, err := os.ReadFile("deploy/nginx/stepgate.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`proxy_set_header (X-Stepup-[A-Za-z-]+)`).FindAllStringSubmatch(string(conf), -1) {
		if !slices.Contains(got, m[1]) {
			t.Errorf("auth-response-headers lacks %s, which deploy/nginx sets (or clears) for the app", m[1])
		}
	}
	if p := get(pages, "spec", "rules", 0, "http", "paths", 0, "path"); p != "/.stepup/" {
		t.Errorf("the pages Ingress routes %v; want /.stepup/", p)
	}
	if pa, _ := get(pages, "metadata", "annotations").(map[string]any); pa[p+"auth-url"] != nil {
		t.Errorf("the pages Ingress must not ask auth-url: the challenge would need a second factor")
	}
}
