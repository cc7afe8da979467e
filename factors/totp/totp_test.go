package totp

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// RFC 6238 Appendix B, SHA-1, 8 digits; the secret is "12345678901234567890".
func TestRFC6238Vectors(t *testing.T) {
	secret := []byte("12345678901234567890")
	p := Params{Period: 30 * time.Second, Digits: 8, Skew: 1}
	for _, v := range []struct {
		unix int64
		code string
	}{{59, "94287082"}, {1111111109, "07081804"}, {1111111111, "14050471"}, {1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"}} {
		got, err := Code(secret, Step(time.Unix(v.unix, 0), p), p)
		if err != nil || got != v.code {
			t.Errorf("Code at %d = %q, %v; want %q", v.unix, got, err, v.code)
		}
		step, ok := Match(secret, v.code, time.Unix(v.unix, 0), p)
		if !ok || step != Step(time.Unix(v.unix, 0), p) {
			t.Errorf("Match at %d = %d, %v; want its step", v.unix, step, ok)
		}
	}
}

func TestMatchSkew(t *testing.T) {
	secret, _ := NewSecret()
	p := Default
	now := time.Unix(1_700_000_000, 0)
	cur := Step(now, p)
	for d := int64(-3); d <= 3; d++ {
		code, _ := Code(secret, cur+d, p)
		step, ok := Match(secret, code, now, p)
		want := d >= -1 && d <= 1
		if ok != want {
			// A code of a step outside the window may collide with one in it
			// (one in a million); only a missed match inside is an error.
			if want {
				t.Errorf("step %+d: ok = %v; want %v", d, ok, want)
			}
			continue
		}
		if ok && step != cur+d {
			t.Errorf("step %+d: matched step %d; want %d", d, step, cur+d)
		}
	}
	for _, bad := range []string{"", "12345", "1234567", "12345a", " 123456", "１２３４５６"} {
		if _, ok := Match(secret, bad, now, p); ok {
			t.Errorf("Match(%q) = ok; want refused", bad)
		}
	}
}

func TestURI(t *testing.T) {
	secret := []byte("12345678901234567890")
	uri, err := URI("stepgate demo", "alice@example.com", secret, Default)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" {
		t.Fatalf("URI %q; want otpauth://totp/...", uri)
	}
	q := u.Query()
	if q.Get("secret") != Base32(secret) || q.Get("digits") != "6" || q.Get("period") != "30" || q.Get("algorithm") != "SHA1" || q.Get("issuer") != "stepgate demo" {
		t.Fatalf("URI query %v", q)
	}
	if !strings.Contains(u.Path, "alice@example.com") {
		t.Fatalf("URI path %q lacks the account", u.Path)
	}
	png, err := QR(uri, 200)
	if err != nil || len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("QR: %d bytes, %v; want a PNG", len(png), err)
	}
}

func TestParams(t *testing.T) {
	p, err := ParamsOf(PublicOf(Default), 1)
	if err != nil || p != Default {
		t.Fatalf("ParamsOf(PublicOf(Default)) = %+v, %v", p, err)
	}
	for _, bad := range []Params{{Period: 0, Digits: 6}, {Period: 1500 * time.Millisecond, Digits: 6}, {Period: 30 * time.Second, Digits: 7}, {Period: 30 * time.Second, Digits: 6, Skew: 5}} {
		if bad.Validate() == nil {
			t.Errorf("%+v: Validate nil", bad)
		}
	}
	if _, err := ParamsOf([]byte(`{"period":30,"digits":6,"algorithm":"SHA256"}`), 1); err == nil {
		t.Errorf("ParamsOf SHA256: nil error")
	}
}
