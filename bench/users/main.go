// Command users makes the many-user and invalid-token traffic of
// bench/run.sh: an RS256 identity provider (a key and its JWKS) and files of
// Cookie header values, one per line, for wrk's bench/users.lua.
//
//	users keygen -key KEY.pem
//	users serve  -key KEY.pem -listen 127.0.0.1:PORT     # GET /jwks.json
//	users access -key KEY.pem -sub NAME                   # one access token
//	users mint   -key KEY.pem -n 50000 -template TOKEN -second-factor-secret-file F -out users.txt
//	users forge  -key KEY.pem -n 1000 -out forged.txt
//
// mint writes n distinct users, each a valid RS256 access token (kid
// "bench") and a second-factor token re-signed from TEMPLATE — a real token
// from the stepgate under test, got through its API — with the user's sub,
// sid and a fresh jti, so that every claim stepgate adds (the store's
// epoch, the method) is the real one. forge writes access tokens with valid
// claims and a wrong signature (distinct ones, replayed by wrk).
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stepgate/stepgate/bench/internal/serve"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "users:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("want a subcommand: keygen, serve, access, mint, forge")
	}
	fs := flag.NewFlagSet("users "+args[0], flag.ContinueOnError)
	keyFile := fs.String("key", "", "RSA private key (PEM)")
	listen := fs.String("listen", "127.0.0.1:0", "serve: loopback address")
	n := fs.Int("n", 50000, "mint, forge: how many")
	sub := fs.String("sub", "ceremony", "access: subject")
	template := fs.String("template", "", "mint: a real second-factor token of the stepgate under test")
	sfSecretFile := fs.String("second-factor-secret-file", "", "mint: second_factor.secret_file")
	out := fs.String("out", "", "mint, forge: output file")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if args[0] == "keygen" {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
		return os.WriteFile(*keyFile, b, 0o600)
	}
	key, err := readKey(*keyFile)
	if err != nil {
		return err
	}
	now := time.Now()
	switch args[0] {
	case "serve":
		return serveJWKS(key, *listen)
	case "access":
		tok, err := access(key, *sub, now)
		if err != nil {
			return err
		}
		fmt.Println(tok)
		return nil
	case "mint":
		secret, err := os.ReadFile(*sfSecretFile)
		if err != nil {
			return err
		}
		return writeLines(*out, *n, func(i int) (string, error) {
			return mintUser(key, []byte(strings.TrimRight(string(secret), "\r\n")), *template, i, now)
		})
	case "forge":
		return writeLines(*out, *n, func(i int) (string, error) {
			tok, err := access(key, "forged"+strconv.Itoa(i), now)
			if err != nil {
				return "", err
			}
			// Another valid-looking signature: flip bits in the middle.
			dot := strings.LastIndexByte(tok, '.')
			sig, _ := base64.RawURLEncoding.DecodeString(tok[dot+1:])
			sig[len(sig)/2] ^= 0x55
			return "access_token=" + tok[:dot+1] + base64.RawURLEncoding.EncodeToString(sig), nil
		})
	}
	return fmt.Errorf("unknown subcommand %q", args[0])
}

func readKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	return x509.ParsePKCS1PrivateKey(blk.Bytes)
}

// serveJWKS answers GET /jwks.json with the key's public half.
func serveJWKS(key *rsa.PrivateKey, addr string) error {
	body, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "bench", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}})
	if err != nil {
		return err
	}
	ln, err := serve.ListenLoopback(addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	return serve.Run(&http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln)
}

// access signs an RS256 access token for sub (sid "s-"+sub).
func access(key *rsa.PrivateKey, sub string, now time.Time) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"sub": sub, "sid": "s-" + sub, "email": sub + "@example.com",
		"iat": now.Unix(), "exp": now.Add(2 * time.Hour).Unix(),
	})
	t.Header["kid"] = "bench"
	return t.SignedString(key)
}

// mintUser is user i's Cookie value: an access token and a second-factor
// token re-signed from template for that user.
func mintUser(key *rsa.PrivateKey, secret []byte, template string, i int, now time.Time) (string, error) {
	sub := "user" + strconv.Itoa(i)
	at, err := access(key, sub, now)
	if err != nil {
		return "", err
	}
	parts := strings.Split(template, ".")
	if len(parts) != 3 {
		return "", errors.New("-template: not a JWT")
	}
	var hdr, claims map[string]any
	for j, dst := range []*map[string]any{&hdr, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[j])
		if err != nil {
			return "", fmt.Errorf("-template: %w", err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			return "", fmt.Errorf("-template: %w", err)
		}
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	claims["sub"], claims["sid"], claims["jti"] = sub, "s-"+sub, base64.RawURLEncoding.EncodeToString(id[:])
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims))
	for k, v := range hdr {
		if k != "alg" {
			t.Header[k] = v
		}
	}
	sf, err := t.SignedString(secret)
	if err != nil {
		return "", err
	}
	return "access_token=" + at + "; stepgate_2fa=" + sf, nil
}

// writeLines writes line(0..n-1) to path, computed on every CPU (RSA
// signing is slow: ~1 ms each).
func writeLines(path string, n int, line func(int) (string, error)) error {
	lines := make([]string, n)
	errs := make([]error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += len(errs) {
				if lines[i], errs[w] = line(i); errs[w] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}
