// Command mint-tokens prints, for one benchmark identity, a valid HS256
// access token (the primary identity stepgate reads, SPEC §3 identity.jwt)
// and a valid second-factor token for the same subject and session
// (SPEC §8), so that wrk can send requests that pass a step_up rule.
//
// Output is shell assignments, one a line:
//
//	ACCESS_TOKEN=...
//	SECOND_FACTOR_TOKEN=...
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr, time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "mint-tokens:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("mint-tokens", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jwtSecretFile := fs.String("jwt-secret-file", "", "file holding identity.jwt HMAC secret (required)")
	sfSecretFile := fs.String("second-factor-secret-file", "", "file holding second_factor.secret (required)")
	sub := fs.String("sub", "bench-user", "subject")
	sid := fs.String("sid", "bench-session", "session id (the sid claim)")
	email := fs.String("email", "bench@example.com", "email claim")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of both tokens; keep it within second_factor.ttl and the rule's max_age")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *jwtSecretFile == "" || *sfSecretFile == "" {
		return fmt.Errorf("-jwt-secret-file and -second-factor-secret-file are required")
	}
	jwtSecret, err := readSecret(*jwtSecretFile)
	if err != nil {
		return err
	}
	sfSecret, err := readSecret(*sfSecretFile)
	if err != nil {
		return err
	}

	access, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":   *sub,
		"sid":   *sid,
		"email": *email,
		"iat":   now.Unix(),
		"exp":   now.Add(*ttl).Unix(),
	}).SignedString(jwtSecret)
	if err != nil {
		return fmt.Errorf("sign access token: %w", err)
	}
	second, err := mintSecondFactor(sfSecret, *sub, *sid, now, *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "ACCESS_TOKEN=%s\nSECOND_FACTOR_TOKEN=%s\n", access, second)
	return err
}

// mintSecondFactor signs a second-factor token in the format of SPEC §8:
// HS256 with the second-factor secret, header typ "stepgate-2fa+jwt" (so
// an access token signed with a shared secret can never pass as one), and
// the claims iss, sub, sid, auth_time, iat, exp, jti and amr.
//
// It signs the token itself because package challenge mints only inside
// Service.Verify (the unexported Service.mint in challenge/token.go), after a
// code was checked. The claims and header follow that function; if an
// exported minting function appears, this should call it instead so the
// benchmark cannot drift from the real format.
func mintSecondFactor(secret []byte, sub, sid string, now time.Time, ttl time.Duration) (string, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("token id: %w", err)
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss":       "stepgate",
		"sub":       sub,
		"sid":       sid,
		"auth_time": now.Unix(),
		"iat":       now.Unix(),
		"exp":       now.Add(ttl).Unix(),
		"jti":       base64.RawURLEncoding.EncodeToString(id[:]),
		"amr":       []string{"otp", "email"},
	})
	t.Header["typ"] = "stepgate-2fa+jwt"
	s, err := t.SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign second-factor token: %w", err)
	}
	return s, nil
}

// readSecret reads a secret file as stepgate's *_file keys do: the bytes
// of the file without a trailing line end.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) < 32 {
		return nil, fmt.Errorf("secret in %s: %d bytes; stepgate requires at least 32", path, len(b))
	}
	return b, nil
}
