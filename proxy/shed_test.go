package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stepgate/stepgate/identity"
)

// TestShedVerification: with the one verification slot
// (identity.jwt.verify_concurrency 1) held, a request whose ES256 token
// needs a signature check is answered 503 with Retry-After once
// verify_wait passes, in proxy mode (API and browser) and by every
// forward-auth endpoint, and nothing reaches the upstream; a cached valid
// token is forwarded meanwhile. Each shed is counted as decision
// "unavailable" and in the shed counter.
func TestShedVerification(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	entered, proceed := make(chan struct{}), make(chan struct{})
	shed := prometheus.NewCounter(prometheus.CounterOpts{Name: "shed"})
	auth, err := identity.New(identity.Config{Source: "jwt", JWT: identity.JWTConfig{
		Cookie: "access_token", Algorithms: []string{"ES256"},
		PublicKeyPEM:      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		VerifyConcurrency: 1, VerifyWait: 20 * time.Millisecond, Shed: shed,
		Verifying: func() {
			select {
			case entered <- struct{}{}: // the holder below: keep the slot
				<-proceed
			default:
			}
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	valid, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"sub": "alice", "sid": "s1", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	forged := func(n int) string { // a distinct, never cached bad signature
		i := strings.LastIndexByte(valid, '.')
		sig := []byte(valid[i+1:])
		sig[0], sig[1] = "ABCDEFGH"[n%8], "ABCDEFGH"[n/8%8]
		return valid[:i+1] + string(sig)
	}
	up := newUpstream(t)
	m := NewMetrics(nil)
	_, srv := newGate(t, Config{Upstream: mustURL(t, up.URL), Identity: auth, Metrics: m,
		ForwardAuth: true, TrustedProxies: loopback(), LoginURL: "/login?rd={rd}"})
	send := func(req string) rawResponse { return raw(t, srv, req) }

	// The valid token is verified (and cached) before the slot is held.
	if res := send(get("/profile/x", "Authorization: Bearer "+valid)); res.Status != 200 {
		t.Fatalf("valid token: %d %s", res.Status, res.Body)
	}
	up.take(t)

	holder := make(chan rawResponse, 1)
	go func() { holder <- raw(t, srv, get("/profile/x", "Authorization: Bearer "+forged(1))) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the holder's verification never started")
	}

	if res := send(get("/profile/x", "Authorization: Bearer "+valid)); res.Status != 200 {
		t.Fatalf("cached valid token while the slot is held: %d %s; want forwarded", res.Status, res.Body)
	}
	up.take(t)

	calls := []struct{ name, req string }{
		{"proxy API", get("/profile/x", "Authorization: Bearer "+forged(2))},
		{"proxy browser", get("/profile/x", "Accept: text/html", "Cookie: access_token="+forged(3))},
	}
	for i, st := range faStyles {
		calls = append(calls, struct{ name, req string }{st.name,
			st.call(faCase{method: "GET", target: "/profile/x", headers: []string{"Authorization: Bearer " + forged(4+i)}})})
	}
	for _, c := range calls {
		res := send(c.req)
		if res.Status != 503 || res.Header.Get("Retry-After") != "1" {
			t.Errorf("%s: %d Retry-After %q; want 503 with Retry-After: 1", c.name, res.Status, res.Header.Get("Retry-After"))
		}
		if c.name != "proxy browser" && !strings.Contains(res.Body, `"temporarily_unavailable"`) {
			t.Errorf("%s: body %q; want the temporarily_unavailable JSON error", c.name, res.Body)
		}
		up.none(t)
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("profile", Unavailable)); got != float64(len(calls)) {
		t.Errorf(`stepgate_requests_total{rule="profile",decision="unavailable"} = %v; want %d`, got, len(calls))
	}
	if got := testutil.ToFloat64(shed); got != float64(len(calls)) {
		t.Errorf("shed counter %v; want %d", got, len(calls))
	}

	close(proceed)
	if res := <-holder; res.Status != 401 {
		t.Errorf("holder's forged token: %d; want 401 once verified", res.Status)
	}
	up.none(t)
}
