package proxy

import (
	"strings"
	"testing"
)

// TestBypass sends requests that try to reach /admin (denied), /hostonly
// (denied for app.example.com) or DELETE /items (denied) behind the
// policy's back, and requests that must be forwarded in their canonical
// form. Each is written on a raw connection, end to end through the real
// Gate and policy. A refused or denied request must never reach the
// upstream; an accepted one must reach it with exactly the canonical target.
func TestBypass(t *testing.T) {
	up := newUpstream(t)
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL)})

	tests := []struct {
		name   string
		req    string
		status int
		// uri is the exact request target the upstream must receive
		// (status 200 only).
		uri    string
		method string // upstream method when not the request's
	}{
		// Plain and merged slashes.
		{name: "admin", req: get("/admin"), status: 403},
		{name: "admin slash", req: get("/admin/"), status: 403},
		{name: "admin below", req: get("/admin/users"), status: 403},
		{name: "double slash", req: get("//admin"), status: 403},
		{name: "triple slash below", req: get("///admin//users"), status: 403},
		{name: "HEAD admin", req: reqLine("HEAD", "/admin/users"), status: 403},
		// Encoded unreserved characters are decoded before matching.
		{name: "encoded a", req: get("/%61dmin"), status: 403},
		{name: "encoded all", req: get("/%61%64%6D%69%6E/users"), status: 403},
		{name: "encoded lower hex", req: get("/%61%64%6d%69%6e/users"), status: 403},
		// Path parameters are ignored for matching.
		{name: "params", req: get("/admin;x"), status: 403},
		{name: "params below", req: get("/admin;jsessionid=1/users"), status: 403},
		{name: "params empty", req: get("/admin;/users"), status: 403},
		// Dot segments in any encoding, also Tomcat's "..;".
		{name: "dotdot params", req: get("/..;/admin"), status: 400},
		{name: "public dotdot params", req: get("/public/..;/admin"), status: 400},
		{name: "dotdot", req: get("/public/../admin"), status: 400},
		{name: "dot", req: get("/./admin"), status: 400},
		{name: "dot end", req: get("/admin/."), status: 400},
		{name: "encoded dotdot", req: get("/public/%2e%2e/admin"), status: 400},
		{name: "encoded dotdot upper", req: get("/public/%2E%2E/admin"), status: 400},
		{name: "half encoded dotdot", req: get("/public/.%2e/admin"), status: 400},
		{name: "encoded dot", req: get("/admin/%2e"), status: 400},
		{name: "triple dot", req: get("/public/.../admin"), status: 400},
		{name: "overlong utf8 dot", req: get("/public/%c0%ae%c0%ae/admin"), status: 400},
		{name: "fullwidth dot", req: get("/public/%EF%BC%8E%EF%BC%8E/admin"), status: 400},
		// Encoded separators and backslashes.
		{name: "encoded slash", req: get("/admin%2fusers"), status: 400},
		{name: "encoded slash upper", req: get("/public%2F..%2Fadmin"), status: 400},
		{name: "dotdot encoded slash", req: get("/public/..%2fadmin"), status: 400},
		{name: "backslash", req: get("/public\\..\\admin"), status: 400},
		{name: "backslash only", req: get("/admin\\users"), status: 400},
		{name: "encoded backslash", req: get("/public/..%5cadmin"), status: 400},
		{name: "encoded backslash upper", req: get("/admin%5Cusers"), status: 400},
		// Nul, double encoding, fragments, bad escapes.
		{name: "nul", req: get("/admin%00"), status: 400},
		{name: "nul public", req: get("/public/x%00.html"), status: 400},
		{name: "double encoding", req: get("/admin%2500"), status: 400},
		{name: "double encoded dotdot", req: get("/public/%252e%252e/admin"), status: 400},
		{name: "encoded hash", req: get("/admin%23x"), status: 400},
		{name: "hash", req: get("/public/x#/../admin"), status: 400},
		{name: "bad escape", req: get("/admin%zz"), status: 400},
		{name: "short escape", req: get("/public/x%2"), status: 400},
		{name: "encoded semicolon", req: get("/admin%3Bx/users"), status: 400},
		// Only origin-form targets.
		{name: "absolute form", req: get("http://127.0.0.1/admin"), status: 400},
		{name: "absolute form allowed path", req: get("http://app.example.com/public/x"), status: 400},
		{name: "absolute form https", req: get("https://app.example.com/admin"), status: 400},
		{name: "rootless", req: get("http:admin"), status: 400},
		{name: "asterisk", req: reqLine("OPTIONS", "*"), status: 400},
		{name: "connect", req: reqLine("CONNECT", "127.0.0.1:80"), status: 400},
		{name: "connect path", req: reqLine("CONNECT", "/admin"), status: 400},
		// Method overrides: every header spelling and _method.
		{name: "override header", req: reqLine("POST", "/items/1", "X-HTTP-Method-Override: DELETE", "Content-Length: 0"), status: 403},
		{name: "override lower value", req: reqLine("POST", "/items/1", "X-HTTP-Method: delete", "Content-Length: 0"), status: 403},
		{name: "override x-method", req: reqLine("POST", "/items/1", "X-Method-Override: DELETE", "Content-Length: 0"), status: 403},
		{name: "override lower name", req: reqLine("POST", "/items/1", "x-http-method-override: DELETE", "Content-Length: 0"), status: 403},
		{name: "override underscores", req: reqLine("POST", "/items/1", "X_HTTP_Method_Override: DELETE", "Content-Length: 0"), status: 403},
		{name: "override second value", req: reqLine("POST", "/items/1", "X-HTTP-Method-Override: PUT", "X-HTTP-Method-Override: DELETE", "Content-Length: 0"), status: 403},
		{name: "override merged", req: reqLine("POST", "/items/1", "X-HTTP-Method-Override: PUT, DELETE", "Content-Length: 0"), status: 403},
		{name: "_method", req: reqLine("POST", "/items/1?_method=DELETE", "Content-Length: 0"), status: 403},
		{name: "_method lower", req: get("/items/1?_method=delete"), status: 403},
		{name: "_method encoded key", req: get("/items/1?%5Fmethod=DELETE"), status: 403},
		{name: "_method upper key", req: get("/items/1?_METHOD=DELETE"), status: 403},
		{name: "_method php dot key", req: get("/items/1?.method=DELETE"), status: 403},
		{name: "_method encoded value", req: get("/items/1?_method=%44ELETE"), status: 403},
		{name: "_method second", req: get("/items/1?_method=PUT&_method=DELETE"), status: 403},
		{name: "_method after semicolon", req: get("/items/1?a=1;_method=DELETE"), status: 403},
		{name: "_method array", req: get("/items/1?_method[]=DELETE"), status: 403},
		{name: "_method bad escape", req: get("/items/1?_method=DEL%zzETE"), status: 400},
		{name: "_method IIS unicode escape", req: get("/items/1?_method=%u0044ELETE"), status: 400},
		{name: "DELETE", req: reqLine("DELETE", "/items/1"), status: 403},
		// Host: case, port and trailing dot do not escape a host rule.
		{name: "host", req: get("/hostonly/x"), status: 403},
		{name: "host upper", req: get("/hostonly/x", "Host: APP.EXAMPLE.COM"), status: 403},
		{name: "host trailing dot", req: get("/hostonly/x", "Host: app.example.com."), status: 403},
		{name: "host port", req: get("/hostonly/x", "Host: app.example.com:8443"), status: 403},
		{name: "host upper dot port", req: get("/hostonly/x", "Host: App.Example.Com.:80"), status: 403},

		// Accepted: forwarded in canonical form, exactly.
		{name: "other host", req: get("/hostonly/x", "Host: other.example.com"), status: 200, uri: "/hostonly/x"},
		{name: "case differs", req: get("/ADMIN/users"), status: 200, uri: "/ADMIN/users"},
		{name: "lower-case method", req: reqLine("delete", "/items/1"), status: 200, uri: "/items/1", method: "delete"},
		{name: "override to allowed", req: reqLine("POST", "/items/1?_method=PUT", "Content-Length: 0"), status: 200, uri: "/items/1?_method=PUT"},
		{name: "bad escape elsewhere in query", req: get("/public/x?q=100%&a=b"), status: 200, uri: "/public/x?q=100%&a=b"},
		{name: "merged slashes", req: get("/public//x///y"), status: 200, uri: "/public/x/y"},
		{name: "decoded unreserved", req: get("/%70ublic/%7Euser"), status: 200, uri: "/public/~user"},
		{name: "params kept", req: get("/public/x;jsessionid=1"), status: 200, uri: "/public/x;jsessionid=1"},
		{name: "upper-case hex", req: get("/public/caf%c3%a9"), status: 200, uri: "/public/caf%C3%A9"},
		{name: "raw utf8 encoded", req: get("/public/caf\xc3\xa9"), status: 200, uri: "/public/caf%C3%A9"},
		{name: "encoded question mark", req: get("/public/a%3Fb"), status: 400},
		{name: "encoded at kept", req: get("/public/a%40c%2B"), status: 200, uri: "/public/a%40c%2B"},
		{name: "query unchanged", req: get("/public/x?q=%2e%2e/admin&r=%2F"), status: 200, uri: "/public/x?q=%2e%2e/admin&r=%2F"},
		{name: "dots inside names", req: get("/public/a..b/.c"), status: 200, uri: "/public/a..b/.c"},
		{name: "trailing dot trimmed by Windows", req: get("/admin./users"), status: 400},
		{name: "quote encoded", req: get("/public/a\"b"), status: 200, uri: "/public/a%22b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := raw(t, srv, tt.req)
			if res.Status != tt.status {
				t.Fatalf("%s: got status %d; want %d (body %q)", firstLine(tt.req), res.Status, tt.status, res.Body)
			}
			if tt.status != 200 {
				up.none(t)
				return
			}
			s := up.take(t)
			if s.RequestURI != tt.uri {
				t.Errorf("upstream RequestURI: got %q; want %q", s.RequestURI, tt.uri)
			}
			method := tt.method
			if method == "" {
				method, _, _ = strings.Cut(tt.req, " ")
			}
			if s.Method != method {
				t.Errorf("upstream method: got %q; want %q", s.Method, method)
			}
		})
	}
}
