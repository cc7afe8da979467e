// Package totp is RFC 6238 time-based one-time passwords for authenticator
// apps (github.com/pquerna/otp): secrets, otpauth:// URIs and their QR
// codes, and matching a code to its time step. Replay refusal is not here:
// the caller records the matched step with factors.Store.Advance, which
// accepts each step at most once.
package totp

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	pqtotp "github.com/pquerna/otp/totp"
	qrcode "github.com/skip2/go-qrcode"
)

// SecretSize is the length of a new secret: 160 bits, as RFC 4226 §4
// recommends for HMAC-SHA-1.
const SecretSize = 20

// Params are a factor's TOTP parameters. SHA-1 is fixed: it is what every
// authenticator app supports (many ignore the algorithm parameter).
type Params struct {
	Period time.Duration // 30s
	Digits int           // 6 or 8
	Skew   int           // steps accepted either side of now; 1
}

// Default is SPEC §11 factors.totp: 30 s, 6 digits, ±1 step.
var Default = Params{Period: 30 * time.Second, Digits: 6, Skew: 1}

// Validate reports a problem with p.
func (p Params) Validate() error {
	switch {
	case p.Period < time.Second || p.Period%time.Second != 0:
		return errors.New("period: must be a whole number of seconds, at least 1s")
	case p.Digits != 6 && p.Digits != 8:
		return errors.New("digits: must be 6 or 8")
	case p.Skew < 0 || p.Skew > 2:
		return errors.New("skew: must be 0, 1 or 2")
	}
	return nil
}

// Public is what a TOTP factor keeps in factors.Factor.Public: the
// parameters it was enrolled with, so that changing the config later does
// not break apps already set up.
type Public struct {
	Period    int    `json:"period"` // seconds
	Digits    int    `json:"digits"`
	Algorithm string `json:"algorithm"`
}

// PublicOf returns the JSON Public for p.
func PublicOf(p Params) []byte {
	b, _ := json.Marshal(Public{Period: int(p.Period / time.Second), Digits: p.Digits, Algorithm: "SHA1"})
	return b
}

// ParamsOf reads a factor's Public back, with skew from the config.
func ParamsOf(public []byte, skew int) (Params, error) {
	var pub Public
	if err := json.Unmarshal(public, &pub); err != nil {
		return Params{}, fmt.Errorf("totp public data: %w", err)
	}
	if pub.Algorithm != "SHA1" {
		return Params{}, fmt.Errorf("totp public data: algorithm %q", pub.Algorithm)
	}
	p := Params{Period: time.Duration(pub.Period) * time.Second, Digits: pub.Digits, Skew: skew}
	return p, p.Validate()
}

// NewSecret returns SecretSize random bytes.
func NewSecret() ([]byte, error) {
	b := make([]byte, SecretSize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("totp secret: %w", err)
	}
	return b, nil
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Base32 is the secret as users type it into an app (no padding).
func Base32(secret []byte) string { return b32.EncodeToString(secret) }

// URI is the otpauth:// key URI apps read from the QR code.
func URI(issuer, account string, secret []byte, p Params) (string, error) {
	k, err := pqtotp.Generate(pqtotp.GenerateOpts{
		Issuer:      issuer,
		AccountName: account,
		Period:      uint(p.Period / time.Second),
		Secret:      secret,
		Digits:      digits(p.Digits),
		Algorithm:   otp.AlgorithmSHA1,
	})
	if err != nil {
		return "", fmt.Errorf("totp uri: %w", err)
	}
	return k.URL(), nil
}

// QR is the URI as a PNG QR code, size pixels square.
func QR(uri string, size int) ([]byte, error) {
	return qrcode.Encode(uri, qrcode.Medium, size)
}

func digits(n int) otp.Digits {
	if n == 8 {
		return otp.DigitsEight
	}
	return otp.DigitsSix
}

// Step is the RFC 6238 §4.2 time step T of t.
func Step(t time.Time, p Params) int64 {
	return t.Unix() / int64(p.Period/time.Second)
}

// Code is the code for step (for tests and the demo).
func Code(secret []byte, step int64, p Params) (string, error) {
	return hotp.GenerateCodeCustom(Base32(secret), uint64(step), hotp.ValidateOpts{Digits: digits(p.Digits), Algorithm: otp.AlgorithmSHA1})
}

// Match compares code with the codes of the steps within p.Skew of now, in
// constant time and always all of them, and returns the latest matching
// step. ok is false for a wrong or malformed code.
func Match(secret []byte, code string, now time.Time, p Params) (step int64, ok bool) {
	wellFormed := len(code) == p.Digits
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			wellFormed = false
		}
	}
	cur := Step(now, p)
	found := int64(-1)
	for s := cur - int64(p.Skew); s <= cur+int64(p.Skew); s++ {
		want, err := Code(secret, s, p)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			found = s
		}
	}
	if !wellFormed || found < 0 {
		return 0, false
	}
	return found, true
}
