package redisstore_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stepgate/stepgate/challenge"
	"github.com/stepgate/stepgate/challenge/mailer"
	"github.com/stepgate/stepgate/challenge/mailtest"
	"github.com/stepgate/stepgate/challenge/redisstore"
	"github.com/stepgate/stepgate/challenge/redisstore/redistest"
	"github.com/stepgate/stepgate/identity"
	"github.com/stepgate/stepgate/secondfactor"
)

// These tests run two challenge.Service replicas, each with its own
// redisstore.Store on one real redis-server and its own SMTP sender to one
// real in-process SMTP server, and drive them only through their HTTP
// handlers, as a load balancer without sticky sessions would (SPEC §10
// State: a code sent by one replica is accepted by another).

const (
	repPrefix = "/.stepup"
	repCookie = "stepgate"
	repHeader = "X-Second-Factor-Token"
	// repAccessCookie carries the browser's access token (identity.jwt.cookie).
	repAccessCookie = "access_token"
)

var (
	// repSecret is second_factor.secret, the same on every replica.
	repSecret = []byte("replica-test second factor secret, 32+ bytes long")
	// repAccessKey signs the access tokens (identity.jwt.hmac_secret); it
	// differs from repSecret, as the config loader requires.
	repAccessKey = []byte("replica-test access token HMAC key, 32+ bytes long")
)

// repOTP is SPEC §3 otp with max_attempts 4, so that a dead code is
// reached in a few requests.
func repOTP() challenge.OTPConfig {
	return challenge.OTPConfig{Length: 6, TTL: 5 * time.Minute, MaxAttempts: 4, ResendAfter: 30 * time.Second,
		MaxSendsPerHour: 5, MaxFailuresPerHour: 20, Lockout: 15 * time.Minute}
}

// replica is one stepgate process: a Service with its own Store and
// Sender, served over real HTTP.
type replica struct {
	name string
	svc  *challenge.Service
	tok  *secondfactor.Tokens
	url  string
}

// cluster is the replicas, the shared identity provider's verifier and
// the shared inbox.
type cluster struct {
	auth   *identity.Authenticator
	in     *mailtest.Server
	reps   [2]*replica
	client *http.Client
}

// newCluster starts two replicas sharing the redis-server at addr.
// mod changes each replica's store options.
func newCluster(t *testing.T, addr string, otp challenge.OTPConfig, mod ...func(*redisstore.Options)) *cluster {
	t.Helper()
	auth, err := identity.New(identity.Config{Source: "jwt", JWT: identity.JWTConfig{
		Cookie: repAccessCookie, Algorithms: []string{"HS256"}, HMACSecret: repAccessKey,
	}})
	if err != nil {
		t.Fatalf("identity.New: %v", err)
	}
	c := &cluster{
		auth: auth,
		in:   mailtest.Start(t, mailtest.Options{}),
		client: &http.Client{
			Timeout: 15 * time.Second,
			// Redirects are part of what is checked, never followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	for i := range c.reps {
		svc, tok := newReplicaService(t, addr, c.in.Port(), auth, otp, repSecret, nil, mod...)
		srv := httptest.NewServer(svc.Handler())
		t.Cleanup(srv.Close)
		c.reps[i] = &replica{name: "replica " + strconv.Itoa(i+1), svc: svc, tok: tok, url: srv.URL}
	}
	return c
}

// newReplicaService builds one replica's Service with its own Store
// (same KeyPrefix) and its own SMTP sender.
func newReplicaService(t *testing.T, addr string, smtpPort int, auth *identity.Authenticator,
	otp challenge.OTPConfig, secret []byte, previous [][]byte, mod ...func(*redisstore.Options)) (*challenge.Service, *secondfactor.Tokens) {
	t.Helper()
	o := redisstore.Options{Addr: addr, KeyPrefix: "stepgate:", Timeout: time.Second}
	for _, f := range mod {
		f(&o)
	}
	store := newStore(t, o)
	sender, err := mailer.NewSMTPSender(mailer.SMTPConfig{Host: "127.0.0.1", Port: smtpPort, TLS: "none",
		Timeout: 5 * time.Second, From: "stepgate <no-reply@example.com>"})
	if err != nil {
		t.Fatalf("NewSMTPSender: %v", err)
	}
	tokens, err := secondfactor.New(secondfactor.Config{
		Secret:          secret,
		PreviousSecrets: previous,
		CookieName:      repCookie,
		HeaderName:      repHeader,
		TTL:             12 * time.Hour,
		Revocations:     store,
	})
	if err != nil {
		t.Fatalf("secondfactor.New: %v", err)
	}
	svc, err := challenge.New(challenge.Config{
		Secret:       secret,
		Tokens:       tokens,
		OTP:          otp,
		MailSubject:  "Your verification code",
		Sender:       sender,
		Store:        store,
		Prefix:       repPrefix,
		Authenticate: auth.Authenticate,
		LoginURL:     "/login?rd={rd}",
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("challenge.New: %v", err)
	}
	return svc, tokens
}

// accessToken is an HS256 access token from the identity provider.
func accessToken(t *testing.T, sub, sid string, emails ...string) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "sid": sid, "email": emails,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).SignedString(repAccessKey)
	if err != nil {
		t.Fatalf("sign access token: %v", err)
	}
	return tok
}

// reply is a response read in full.
type reply struct {
	code   int
	header http.Header
	body   string
	resp   *http.Response
}

func (c *cluster) do(t *testing.T, r *http.Request) reply {
	t.Helper()
	resp, err := c.client.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: read body: %v", r.Method, r.URL.Path, err)
	}
	return reply{code: resp.StatusCode, header: resp.Header, body: string(b), resp: resp}
}

// api calls the JSON API of replica i (0 is replica 1) as the holder of
// access token at; hdr adds headers (name, value, ...).
func (c *cluster) api(t *testing.T, i int, method, path, at, body string, hdr ...string) reply {
	t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, c.reps[i].url+repPrefix+path, rb)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Authorization", "Bearer "+at)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for j := 0; j+1 < len(hdr); j += 2 {
		r.Header.Set(hdr[j], hdr[j+1])
	}
	return c.do(t, r)
}

// browser calls a page of replica i as a browser with the access cookie
// at and the second-factor cookie tok ("" for none); form nil means GET.
func (c *cluster) browser(t *testing.T, i int, path, at, tok string, form url.Values) reply {
	t.Helper()
	method, body := http.MethodGet, io.Reader(nil)
	if form != nil {
		method, body = http.MethodPost, strings.NewReader(form.Encode())
	}
	r, err := http.NewRequest(method, c.reps[i].url+repPrefix+path, body)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Accept", "text/html,application/xhtml+xml")
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	r.AddCookie(&http.Cookie{Name: repAccessCookie, Value: at})
	if tok != "" {
		r.AddCookie(&http.Cookie{Name: repCookie, Value: tok})
	}
	return c.do(t, r)
}

// check runs replica i's Service.Check, the proxy's hot path, on a
// request carrying the access token at and the second-factor cookie tok.
func (c *cluster) check(t *testing.T, i int, at, tok string) (secondfactor.Grant, bool) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/admin", nil)
	r.AddCookie(&http.Cookie{Name: repAccessCookie, Value: at})
	r.AddCookie(&http.Cookie{Name: repCookie, Value: tok})
	id, err := c.auth.Authenticate(r)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	return c.reps[i].tok.Check(r, id, time.Hour)
}

// otpReply is the error body of PUT /api/email-otp.
type otpReply struct {
	Error        string `json:"error"`
	AttemptsLeft *int   `json:"attempts_left"`
}

func decodeReply(t *testing.T, r reply, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

// wrongCode is a well-formed code other than code.
func wrongCode(code string) string {
	if code == "000000" {
		return "111111"
	}
	return "000000"
}

// checkRetryAfter fails unless h carries Retry-After in whole seconds
// within (0, max].
func checkRetryAfter(t *testing.T, what string, h http.Header, max time.Duration) {
	t.Helper()
	ra := h.Get("Retry-After")
	n, err := strconv.Atoi(ra)
	if err != nil || n <= 0 || time.Duration(n)*time.Second > max {
		t.Errorf("%s: Retry-After %q; want 1..%d seconds", what, ra, int(max/time.Second))
	}
}

var repCSRFRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestReplicas(t *testing.T) {
	addr := redistest.Start(t)
	c := newCluster(t, addr, repOTP())
	alice := accessToken(t, "alice", "s1", "alice@example.com")
	var token string

	ok := t.Run("code sent by 1 is verified by 2", func(t *testing.T) {
		r := c.api(t, 0, "POST", "/api/email-otp", alice, `{"email":"alice@example.com"}`)
		if r.code != 200 || strings.TrimSpace(r.body) != `{"IsPosted":true,"ExpiresIn":300}` {
			t.Fatalf("POST /api/email-otp on replica 1: got %d %s; want 200 IsPosted", r.code, r.body)
		}
		code := c.in.Code(t, "alice@example.com")

		r = c.api(t, 1, "PUT", "/api/email-otp", alice, `{"otp":"`+code+`"}`)
		var vr struct {
			SecondFactorAuthenticationToken string
			ExpiresIn                       int
		}
		decodeReply(t, r, &vr)
		if r.code != 200 || vr.SecondFactorAuthenticationToken == "" || vr.ExpiresIn < 43190 || vr.ExpiresIn > 43200 {
			t.Fatalf("PUT /api/email-otp on replica 2: got %d %s; want 200 with a token for 12h", r.code, r.body)
		}
		token = vr.SecondFactorAuthenticationToken
		var ck *http.Cookie
		for _, x := range r.resp.Cookies() {
			if x.Name == repCookie {
				ck = x
			}
		}
		if ck == nil || ck.Value != token || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
			t.Errorf("replica 2 Set-Cookie %q; want the HttpOnly SameSite=Lax cookie carrying the token", r.header.Values("Set-Cookie"))
		}

		// Single use holds across replicas: the code consumed by 2 is
		// gone for 1.
		r = c.api(t, 0, "PUT", "/api/email-otp", alice, `{"otp":"`+code+`"}`)
		if r.code != 401 || !strings.Contains(r.body, `"error":"expired_otp"`) {
			t.Errorf("code reused on replica 1: got %d %s; want 401 expired_otp", r.code, r.body)
		}
	})
	if !ok {
		return
	}

	ok = t.Run("token minted by 2 is accepted by 1", func(t *testing.T) {
		r := c.api(t, 0, "GET", "/api/validate", alice, "", repHeader, token)
		var vr struct {
			Valid   bool   `json:"valid"`
			Subject string `json:"sub"`
		}
		decodeReply(t, r, &vr)
		if r.code != 200 || !vr.Valid || vr.Subject != "alice" {
			t.Errorf("GET /api/validate on replica 1: got %d %s; want 200 valid for alice", r.code, r.body)
		}
		if g, ok := c.check(t, 0, alice, token); !ok || g.Subject != "alice" || g.ID == "" {
			t.Errorf("replica 1 Check: got %+v, %v; want alice's grant", g, ok)
		}
		// The token stays bound to alice's login session on every replica.
		other := accessToken(t, "alice", "s2", "alice@example.com")
		if _, ok := c.check(t, 0, other, token); ok {
			t.Errorf("replica 1 Check accepted the token for another session of alice")
		}

		// Key rotation: a replica whose previous_secrets holds the old
		// secret still accepts the token; one that dropped it does not.
		newSecret := []byte("replica-test rotated second factor secret, 32+ bytes")
		ar := httptest.NewRequest("GET", "/", nil)
		ar.Header.Set("Authorization", "Bearer "+alice)
		id, err := c.auth.Authenticate(ar)
		if err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		_, rotated := newReplicaService(t, addr, c.in.Port(), c.auth, repOTP(), newSecret, [][]byte{repSecret})
		if _, err := rotated.Validate(t.Context(), token, id); err != nil {
			t.Errorf("replica with the old secret in previous_secrets: Validate: %v; want the token accepted", err)
		}
		_, dropped := newReplicaService(t, addr, c.in.Port(), c.auth, repOTP(), newSecret, nil)
		if _, err := dropped.Validate(t.Context(), token, id); err == nil {
			t.Errorf("replica without the old secret accepted a token signed with it")
		}
	})
	if !ok {
		return
	}

	t.Run("logout on 1 revokes on 2", func(t *testing.T) {
		// Replica 2 has seen the token before the logout, so a cached
		// verification there must not outlive the revocation.
		if r := c.api(t, 1, "GET", "/api/validate", alice, "", repHeader, token); r.code != 200 {
			t.Fatalf("GET /api/validate on replica 2 before logout: got %d %s; want 200", r.code, r.body)
		}
		if _, ok := c.check(t, 1, alice, token); !ok {
			t.Fatalf("replica 2 Check before logout: not ok; want ok")
		}

		// The status page of replica 2 gives the CSRF token; CSRF tokens
		// are derived from the shared secret, so replica 1 takes it.
		page := c.browser(t, 1, "/", alice, token, nil)
		if page.code != 200 || !strings.Contains(page.body, "Confirmed at") {
			t.Fatalf("GET / on replica 2: got %d; want 200 with the factor confirmed:\n%s", page.code, page.body)
		}
		m := repCSRFRe.FindStringSubmatch(page.body)
		if m == nil {
			t.Fatalf("no csrf field on the status page:\n%s", page.body)
		}
		csrf := m[1]

		// A forged logout (wrong CSRF token) changes nothing.
		r := c.browser(t, 0, "/logout", alice, token, url.Values{"csrf": {"forged"}, "rd": {"/"}})
		if r.code != http.StatusForbidden {
			t.Errorf("POST /logout with a wrong csrf on replica 1: got %d; want 403", r.code)
		}
		if _, ok := c.check(t, 1, alice, token); !ok {
			t.Fatalf("a refused logout revoked the token")
		}

		r = c.browser(t, 0, "/logout", alice, token, url.Values{"csrf": {csrf}, "rd": {"/"}})
		if r.code != http.StatusSeeOther || r.header.Get("Location") != "/" {
			t.Fatalf("POST /logout on replica 1: got %d Location %q; want 303 to /:\n%s", r.code, r.header.Get("Location"), r.body)
		}
		cleared := false
		for _, x := range r.resp.Cookies() {
			cleared = cleared || (x.Name == repCookie && x.Value == "" && x.MaxAge < 0)
		}
		if !cleared {
			t.Errorf("POST /logout Set-Cookie %q; want the cookie cleared", r.header.Values("Set-Cookie"))
		}

		r = c.api(t, 1, "GET", "/api/validate", alice, "", repHeader, token)
		if r.code != 401 || !strings.Contains(r.body, `"valid":false`) || !strings.Contains(r.body, `"error":"invalid_token"`) {
			t.Errorf("GET /api/validate on replica 2 after logout on 1: got %d %s; want 401 invalid_token", r.code, r.body)
		}
		for i := range c.reps {
			if g, ok := c.check(t, i, alice, token); ok {
				t.Errorf("%s Check after logout: got %+v, ok; want refused", c.reps[i].name, g)
			}
		}
		if page := c.browser(t, 1, "/", alice, token, nil); !strings.Contains(page.body, "Not confirmed") {
			t.Errorf("status on replica 2 after logout still shows the factor:\n%s", page.body)
		}
	})

	t.Run("wrong codes on both replicas kill the code after max_attempts", func(t *testing.T) {
		bob := accessToken(t, "bob", "b1", "bob@example.com")
		r := c.api(t, 0, "POST", "/api/email-otp", bob, `{"index":0}`)
		if r.code != 200 {
			t.Fatalf("POST /api/email-otp on replica 1: got %d %s; want 200", r.code, r.body)
		}
		code := c.in.Code(t, "bob@example.com")
		wrong := wrongCode(code)
		maxAttempts := repOTP().MaxAttempts
		for n := 1; n < maxAttempts; n++ {
			i := n % 2 // replica 2, 1, 2, ...
			r := c.api(t, i, "PUT", "/api/email-otp", bob, `{"otp":"`+wrong+`"}`)
			var oe otpReply
			decodeReply(t, r, &oe)
			if want := maxAttempts - n; r.code != 401 || oe.Error != "invalid_otp" || oe.AttemptsLeft == nil || *oe.AttemptsLeft != want {
				t.Fatalf("wrong code %d on %s: got %d %s; want 401 invalid_otp attempts_left %d", n, c.reps[i].name, r.code, r.body, want)
			}
		}
		i := maxAttempts % 2
		r = c.api(t, i, "PUT", "/api/email-otp", bob, `{"otp":"`+wrong+`"}`)
		var oe otpReply
		decodeReply(t, r, &oe)
		if r.code != 401 || oe.Error != "expired_otp" || oe.AttemptsLeft == nil || *oe.AttemptsLeft != 0 {
			t.Fatalf("wrong code %d on %s: got %d %s; want 401 expired_otp attempts_left 0", maxAttempts, c.reps[i].name, r.code, r.body)
		}
		// The dead code is dead on both replicas, even when right.
		for i := range c.reps {
			r := c.api(t, i, "PUT", "/api/email-otp", bob, `{"otp":"`+code+`"}`)
			if r.code != 401 || !strings.Contains(r.body, `"error":"expired_otp"`) {
				t.Errorf("right code after the code died, on %s: got %d %s; want 401 expired_otp", c.reps[i].name, r.code, r.body)
			}
		}
	})

	t.Run("resend on 2 right after a send on 1 is throttled", func(t *testing.T) {
		carol := accessToken(t, "carol", "c1", "carol@example.com")
		r := c.api(t, 0, "POST", "/api/email-otp", carol, `{"index":0}`)
		if r.code != 200 {
			t.Fatalf("POST /api/email-otp on replica 1: got %d %s; want 200", r.code, r.body)
		}
		c.in.Code(t, "carol@example.com")
		r = c.api(t, 1, "POST", "/api/email-otp", carol, `{"index":0}`)
		if r.code != http.StatusTooManyRequests || !strings.Contains(r.body, `"error":"too_many_requests"`) {
			t.Fatalf("resend on replica 2: got %d %s; want 429 too_many_requests", r.code, r.body)
		}
		checkRetryAfter(t, "resend on replica 2", r.header, repOTP().ResendAfter)
		c.in.None(t, "throttled resend on replica 2")
	})
}

// TestReplicaLockout: failures counted on both replicas lock the user out
// on both (SPEC §9: failures count per user across codes and sessions),
// at the Nth (otp.max_failures_per_hour: N means N).
func TestReplicaLockout(t *testing.T) {
	addr := redistest.Start(t)
	otp := repOTP()
	otp.MaxAttempts = 5
	otp.MaxFailuresPerHour = 2
	c := newCluster(t, addr, otp)
	dave := accessToken(t, "dave", "d1", "dave@example.com")

	if r := c.api(t, 0, "POST", "/api/email-otp", dave, `{"index":0}`); r.code != 200 {
		t.Fatalf("POST /api/email-otp on replica 1: got %d %s; want 200", r.code, r.body)
	}
	code := c.in.Code(t, "dave@example.com")
	wrong := wrongCode(code)
	r := c.api(t, 0, "PUT", "/api/email-otp", dave, `{"otp":"`+wrong+`"}`)
	if r.code != 401 || !strings.Contains(r.body, `"error":"invalid_otp"`) {
		t.Fatalf("wrong code 1 on %s: got %d %s; want 401 invalid_otp", c.reps[0].name, r.code, r.body)
	}
	// N means N: the second wrong code, on the other replica, locks.
	r = c.api(t, 1, "PUT", "/api/email-otp", dave, `{"otp":"`+wrong+`"}`)
	if r.code != http.StatusTooManyRequests {
		t.Fatalf("wrong code 2 of 2 on replica 2: got %d %s; want 429 (locked)", r.code, r.body)
	}
	// Both failures are a moment old: the lock lasts until the first
	// leaves the hour, longer than the 15m lockout.
	checkRetryAfter(t, "locked", r.header, time.Hour)
	if n, _ := strconv.Atoi(r.header.Get("Retry-After")); time.Duration(n)*time.Second <= otp.Lockout {
		t.Errorf("locked: Retry-After %d s; want about 3600 (until the failures leave the hour), more than the lockout", n)
	}
	r = c.api(t, 0, "PUT", "/api/email-otp", dave, `{"otp":"`+wrong+`"}`)
	if r.code != http.StatusTooManyRequests {
		t.Fatalf("third wrong code on replica 1: got %d %s; want 429 (locked)", r.code, r.body)
	}

	// Locked on replica 2 too: the right code and a new send are refused.
	r = c.api(t, 1, "PUT", "/api/email-otp", dave, `{"otp":"`+code+`"}`)
	if r.code != http.StatusTooManyRequests || strings.Contains(r.body, "SecondFactorAuthenticationToken") {
		t.Errorf("right code on replica 2 while locked: got %d %s; want 429 and no token", r.code, r.body)
	}
	checkRetryAfter(t, "right code while locked", r.header, time.Hour)
	r = c.api(t, 1, "POST", "/api/email-otp", dave, `{"index":0}`)
	if r.code != http.StatusTooManyRequests {
		t.Errorf("send on replica 2 while locked: got %d %s; want 429", r.code, r.body)
	}
	c.in.None(t, "send while locked")
}
