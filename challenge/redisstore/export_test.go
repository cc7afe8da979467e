package redisstore

import (
	"crypto/tls"

	"github.com/redis/go-redis/v9"
)

// ClientOptions exposes the go-redis options New built, for tests.
func ClientOptions(s *Store) *redis.Options { return s.client.Options() }

// ClientTLS exposes clientTLS, for tests.
func ClientTLS(c *tls.Config, addr string) (*tls.Config, error) { return clientTLS(c, addr) }
