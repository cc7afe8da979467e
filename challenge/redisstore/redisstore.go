// Package redisstore is the challenge Store on Redis, shared by replicas.
// It is the only importer of go-redis.
package redisstore

import (
	"crypto/tls"
	"time"

	"github.com/stepgate/stepgate/challenge"
)

// Options configures the Redis connection.
type Options struct {
	Addr      string
	Password  string
	DB        int
	KeyPrefix string
	TLS       *tls.Config // nil: plain TCP
	// Timeout bounds dialing and each command; 0 means 2s.
	Timeout time.Duration
}

// Store implements challenge.Store.
type Store struct{}

var _ = challenge.ErrNoCode // var _ challenge.Store = (*Store)(nil) once implemented

// New connects lazily; it does not fail when Redis is down (readyz does).
func New(o Options) (*Store, error) { panic("unimplemented") }
