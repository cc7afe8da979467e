package demo

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stepgate/stepgate/challenge/mailer"
)

func TestInboxKeepsNewestAndFindsCode(t *testing.T) {
	in, err := NewInbox(3, "/.stepup", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		m := mailer.Message{To: "demo@example.com", Subject: "s", Text: fmt.Sprintf("Your code is:\n\n    12345%d\n\nbye", i)}
		if err := in.Send(context.Background(), m); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	got := in.Messages()
	if len(got) != 3 {
		t.Fatalf("kept %d messages; want 3", len(got))
	}
	for i, want := range []string{"123454", "123453", "123452"} {
		if got[i].Code != want {
			t.Errorf("message %d: got code %q; want %q (newest first)", i, got[i].Code, want)
		}
	}
	for _, bad := range []string{"", "a@b.c, d@e.f", "Demo <demo@example.com>", "demo@example.com\r\nBcc: x@y.z"} {
		if err := in.Send(context.Background(), mailer.Message{To: bad}); err == nil {
			t.Errorf("Send to %q: got nil; want an error", bad)
		}
	}

	rec := httptest.NewRecorder()
	in.ServeHTTP(rec, httptest.NewRequest("GET", "/.stepup/dev/inbox", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `value="123454"`) {
		t.Errorf("inbox page: got %d %q; want 200 with the newest code", rec.Code, rec.Body.String())
	}
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control: got %q; want no-store", got)
	}
}

func TestInboxEscapesMail(t *testing.T) {
	in, err := NewInbox(0, "/.stepup", nil)
	if err != nil {
		t.Fatal(err)
	}
	in.Send(context.Background(), mailer.Message{To: "demo@example.com", Subject: "<script>x</script>", Text: "<img src=x>"})
	rec := httptest.NewRecorder()
	in.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if body := rec.Body.String(); strings.Contains(body, "<script>x") || strings.Contains(body, "<img src=x>") {
		t.Errorf("inbox page renders mail as HTML:\n%s", body)
	}
}

func TestAccessToken(t *testing.T) {
	secret := []byte(strings.Repeat("k", 32))
	a, err := NewApp(AppConfig{HMACSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok1, exp, err := a.AccessToken(now)
	if err != nil {
		t.Fatal(err)
	}
	tok2, _, _ := a.AccessToken(now)
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(tok1, claims, func(*jwt.Token) (any, error) { return secret, nil }, jwt.WithValidMethods([]string{"HS256"})); err != nil {
		t.Fatalf("parse: %v", err)
	}
	if claims["sub"] != User || fmt.Sprint(claims["email"]) != "[demo@example.com demo.backup@example.org]" {
		t.Errorf("claims: got %v; want sub demo and both addresses", claims)
	}
	if got, _ := claims.GetExpirationTime(); got == nil || got.Unix() != exp.Unix() {
		t.Errorf("exp: got %v; want %v", got, exp)
	}
	c2 := jwt.MapClaims{}
	jwt.ParseWithClaims(tok2, c2, func(*jwt.Token) (any, error) { return secret, nil })
	if claims["sid"] == c2["sid"] || claims["sid"] == "" {
		t.Errorf("sid: got %v twice; want a fresh session per login", claims["sid"])
	}
	if _, err := NewApp(AppConfig{HMACSecret: []byte("short")}); err == nil {
		t.Errorf("NewApp with a short secret: got nil; want an error")
	}
}
