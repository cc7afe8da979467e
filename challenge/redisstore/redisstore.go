// Package redisstore is the challenge Store on Redis, shared by replicas.
// It is the only importer of go-redis.
//
// Every check-and-update that decides security (throttling a send, checking
// a code, counting a failure) is one Lua script, which Redis runs atomically,
// so no interleaving of replicas allows more sends or guesses than
// configured (SPEC §9, §10). Every key carries a TTL.
package redisstore

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/stepgate/stepgate/challenge"
)

// defaultTimeout is Options.Timeout's zero value.
const defaultTimeout = 2 * time.Second

// defaultStateLossLockout is Options.StateLossLockout's zero value.
const defaultStateLossLockout = 15 * time.Minute

// minPoolSize is the least Options.PoolSize's zero value gives. go-redis's
// own default, 10 × GOMAXPROCS, is 20 connections on a 2-CPU container:
// every step_up request needs a connection, so a proxy serving 64
// concurrent step_up requests would queue them for the pool (up to
// Timeout, then fail them) well before Redis itself is busy.
const minPoolSize = 64

// Options configures the Redis connection.
type Options struct {
	// Addr is host:port of the server. It is required.
	Addr string
	// Password is sent with AUTH. Empty means no AUTH.
	Password string
	// DB is the database number; 0 is Redis's default.
	DB int
	// KeyPrefix starts every key, so that stepgate can share a server
	// (e.g. "stepgate:"). Empty means no prefix.
	KeyPrefix string
	// TLS, when not nil, makes every connection TLS with this config. New
	// uses a clone with MinVersion raised to TLS 1.2 when lower, and
	// ServerName set to Addr's host when empty, so the server's
	// certificate is always verified against a name. nil means plain TCP.
	TLS *tls.Config
	// Timeout bounds dialing, each command and the wait for a pooled
	// connection; 0 means 2s.
	Timeout time.Duration
	// PoolSize is the most connections the Store keeps to Redis, and so
	// the most commands in flight at once; a caller beyond it waits up to
	// Timeout for a connection. 0 means 10 × GOMAXPROCS but at least 64.
	PoolSize int
	// StateLossLockout is how long every user counts as locked out after
	// this Store saw Redis lose its state (another epoch than the one it
	// knew, see epoch.go): the lockouts that were lost are unknown, so
	// none is lifted by the loss. 0 means 15 minutes (otp.lockout's
	// default); serve passes otp.lockout.
	StateLossLockout time.Duration
	// RevocationCache is how many token ids known not to be revoked this
	// Store keeps, so that Revoked needs no round trip while its
	// subscription to the revocation channel delivers (revocations.go);
	// about 100 bytes each. 0 means no cache: one round trip per call.
	RevocationCache int
}

// DefaultPoolSize is the pool size Options.PoolSize's zero value gives on
// this process: 10 × GOMAXPROCS, at least 64.
func DefaultPoolSize() int {
	return max(10*runtime.GOMAXPROCS(0), minPoolSize)
}

// Store implements challenge.Store. It is safe for concurrent use.
type Store struct {
	client      *redis.Client
	prefix      string
	timeout     time.Duration
	lossLockout time.Duration
	// known is the epoch this Store last saw (a string; unset before the
	// first call).
	known atomic.Value
	// rev is the not-revoked cache (revocations.go); nil when off.
	rev *revCache
	// subStop ends the subscriber, which closes subDone; nil without rev.
	subStop context.CancelFunc
	subDone chan struct{}
}

var _ challenge.Store = (*Store)(nil)

// New connects lazily; it does not fail when Redis is down (readyz does).
func New(o Options) (*Store, error) {
	if o.Addr == "" {
		return nil, errors.New("redisstore: empty address")
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("redisstore: negative timeout %v", o.Timeout)
	}
	if o.PoolSize < 0 {
		return nil, fmt.Errorf("redisstore: negative pool size %d", o.PoolSize)
	}
	if o.RevocationCache < 0 {
		return nil, fmt.Errorf("redisstore: negative revocation cache size %d", o.RevocationCache)
	}
	if o.StateLossLockout < 0 {
		return nil, fmt.Errorf("redisstore: negative state loss lockout %v", o.StateLossLockout)
	}
	lossLockout := o.StateLossLockout
	if lossLockout == 0 {
		lossLockout = defaultStateLossLockout
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = defaultTimeout
	}
	poolSize := o.PoolSize
	if poolSize == 0 {
		poolSize = DefaultPoolSize()
	}
	tlsConfig, err := clientTLS(o.TLS, o.Addr)
	if err != nil {
		return nil, err
	}
	client := redis.NewClient(&redis.Options{
		Addr:      o.Addr,
		Password:  o.Password,
		DB:        o.DB,
		TLSConfig: tlsConfig,
		// PoolSize is also the number of turns a command waits for (up to
		// PoolTimeout). MaxActiveConns is left unset: it would fail a
		// command at once with ErrPoolExhausted where waiting its turn
		// would succeed.
		PoolSize: poolSize,
		// A down Redis must fail a request quickly rather than hold it:
		// every stage is bounded by Timeout, one dial attempt per try, and
		// one retry for a pooled connection the server has closed.
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		ContextTimeoutEnabled: true,
		DialerRetries:         1,
		MaxRetries:            1,
		// stepgate needs no cluster maintenance push notifications; not
		// asking for them keeps the handshake to what every Redis knows.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	s := &Store{client: client, prefix: o.KeyPrefix, timeout: timeout, lossLockout: lossLockout}
	if o.RevocationCache > 0 {
		rev, err := newRevCache(o.RevocationCache)
		if err != nil {
			client.Close()
			return nil, err
		}
		s.rev = rev
		var ctx context.Context
		ctx, s.subStop = context.WithCancel(context.Background())
		s.subDone = make(chan struct{})
		go s.subscribe(ctx)
	}
	return s, nil
}

// clientTLS returns the TLS config New dials with: a clone of c (the
// caller keeps theirs) that never goes below TLS 1.2 (RFC 8996 deprecates
// 1.0 and 1.1) and always names the server it verifies. nil stays nil.
func clientTLS(c *tls.Config, addr string) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	c = c.Clone()
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	if c.ServerName == "" && !c.InsecureSkipVerify {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("redisstore: address %q: %w", addr, err)
		}
		c.ServerName = host
	}
	return c, nil
}

// Key kinds, one per kind of state.
const (
	kindSend     = "send"     // sorted set of send times (ms) in the rolling hour
	kindCode     = "code"     // hash: mac, email, attempts, exp
	kindFail     = "fail"     // sorted set of failure times (ms) in the rolling hour
	kindLock     = "lock"     // string: lockout end (ms), with PX the lockout
	kindRevoked  = "revoked"  // string "1", with PX the token's remaining life
	kindCeremony = "ceremony" // string: a pending passkey ceremony's state, with PX its life
)

// key builds KeyPrefix + kind + ":" + hex(sha256(id)). Hashing makes any
// user string, key or token id (with ':', '*', NUL, any length) a safe,
// fixed-size Redis key that never collides with another kind's, and keeps
// user names and addresses out of the keyspace.
func (s *Store) key(kind, id string) string {
	sum := sha256.Sum256([]byte(id))
	return s.prefix + kind + ":" + hex.EncodeToString(sum[:])
}

// ctx bounds one call by the timeout, on top of the caller's own deadline,
// so a call never waits longer than Timeout however go-redis retries.
func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Revoke marks a token id revoked for ttl. A ttl <= 0 means the token has
// already expired, so there is nothing to revoke.
func (s *Store) Revoke(ctx context.Context, jti string, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	// The key first, then the message, in one transaction: a replica that
	// reads the key after evicting its cache entry finds it set.
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.key(kindRevoked, jti), "1", ceilMS(ttl))
		p.Publish(ctx, s.prefix+revocationChannel, jti)
		return nil
	})
	if s.rev != nil {
		s.rev.evict(jti)
	}
	if err != nil {
		return fmt.Errorf("redisstore: revoke: %w", err)
	}
	return nil
}

// Ping reports whether Redis answers (for /readyz).
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

// Close stops the revocation subscription and closes the connection pool.
func (s *Store) Close() error {
	if s.subStop != nil {
		s.subStop()
		<-s.subDone
	}
	return s.client.Close()
}

// ceilMS rounds d up to a whole millisecond (Redis's PX unit), at least 1ms,
// so that a TTL or wait is never shortened by rounding.
func ceilMS(d time.Duration) time.Duration {
	if d <= time.Millisecond {
		return time.Millisecond
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// ms is ceilMS(d) as a number of milliseconds, for script arguments.
func ms(d time.Duration) int64 { return ceilMS(d).Milliseconds() }
