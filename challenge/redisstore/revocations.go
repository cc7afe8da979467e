package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"
)

// Revocations without a round trip per request, immediate on every replica.
//
// Revoke sets the revocation key and PUBLISHes the token id on the
// revocation channel in one transaction. Every Store subscribes to that
// channel and keeps a bounded local cache of token ids Redis said were not
// revoked: a published revocation evicts its id at once, so the next
// request with that token asks Redis again and is refused.
//
// The cache is only ever used while the subscription is known to deliver:
//
//   - it is emptied, and unused, whenever the subscription is down or not
//     yet confirmed (a start, an error, a reconnect): revocations published
//     meanwhile were missed, so Revoked asks Redis on every call;
//   - the subscriber PINGs on the subscription every leaseEvery, and the
//     cache is used only while a PONG came back within leaseFor: Redis
//     writes a subscription's messages in order, so a PONG proves every
//     revocation published before its PING has been read. A connection
//     that dies without a reset (a partition) stops the cache within
//     leaseFor, and is then replaced;
//   - an entry is stored only when no revocation arrived and the
//     subscription did not change between reading Redis and storing it
//     (gen), so a revocation racing the read cannot be overwritten;
//   - the epoch (epoch.go) is re-read every epochEvery: a Redis flushed
//     without a restart (the subscription survives FLUSHALL) empties the
//     cache, so that tokens of the lost epoch are refused again by Redis.
const (
	revocationChannel = "revoked" // after the key prefix
	leaseEvery        = 200 * time.Millisecond
	leaseFor          = time.Second
	epochEvery        = time.Second
	// resubscribeAfter paces new subscription attempts after a failure,
	// doubling up to resubscribeMax while they fail (go-redis logs every
	// failed dial); a confirmed subscription resets it.
	resubscribeAfter = 100 * time.Millisecond
	resubscribeMax   = 5 * time.Second
)

// revCache is the local not-revoked cache and the subscription's state.
type revCache struct {
	mu sync.RWMutex
	// up: the subscription is confirmed; guarded by mu.
	up bool
	// gen changes whenever an entry could have become stale: on every
	// revocation message, on every change of up, on a flush; guarded by mu.
	gen uint64
	// m maps a token id to the epoch Redis confirmed it under, bounded, least
	// recently used first out; mu orders its changes with gen and up.
	m *lru.Cache[string, string]
	// epoch is the epoch the entries were confirmed under; guarded by mu.
	epoch string

	// proven is when (unix ns) the last PING was sent whose PONG came back.
	proven atomic.Int64
	// now is the clock (tests).
	now func() time.Time
}

func newRevCache(max int) (*revCache, error) {
	m, err := lru.New[string, string](max)
	if err != nil {
		return nil, fmt.Errorf("redisstore: revocation cache of %d: %w", max, err)
	}
	return &revCache{m: m, now: time.Now}, nil
}

// live reports whether the subscription delivers: confirmed, and proven
// within leaseFor. Callers hold mu.
func (c *revCache) live() bool {
	return c.up && c.now().UnixNano()-c.proven.Load() < int64(leaseFor)
}

// lookup reports whether jti is known not revoked under epoch. Otherwise it
// returns the generation to pass to store after asking Redis, and ok false
// when the answer may not be cached (the subscription does not deliver).
func (c *revCache) lookup(jti, epoch string) (hit bool, gen uint64, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.live() {
		return false, 0, false
	}
	if e, found := c.m.Get(jti); found && e == epoch {
		return true, 0, false
	}
	return false, c.gen, true
}

// store records that Redis said jti was not revoked under epoch, unless
// anything happened since lookup returned gen.
func (c *revCache) store(jti, epoch string, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || !c.live() {
		return
	}
	if c.epoch != epoch {
		// Entries of another epoch are worthless now.
		c.m.Purge()
		c.epoch = epoch
	}
	// Past max the least recently used entry makes room; a dropped entry
	// only costs one round trip.
	c.m.Add(jti, epoch)
}

// evict forgets jti (a revocation was published).
func (c *revCache) evict(jti string) {
	c.mu.Lock()
	c.gen++
	c.m.Remove(jti)
	c.mu.Unlock()
}

// setUp records the subscription's state; every change empties the cache.
func (c *revCache) setUp(up bool) {
	c.mu.Lock()
	c.gen++
	c.up = up
	c.m.Purge()
	c.mu.Unlock()
	if !up {
		c.proven.Store(0)
	}
}

// flushEpoch empties the cache when Redis's epoch is not the one its
// entries were confirmed under.
func (c *revCache) flushEpoch(epoch string) {
	c.mu.Lock()
	if c.epoch != "" && c.epoch != epoch {
		c.gen++
		c.m.Purge()
		c.epoch = epoch
	}
	c.mu.Unlock()
}

// Subscribed reports whether the revocation subscription currently
// delivers, so that Revoked answers from the local cache (for tests and
// /metrics). False when the cache is off.
func (s *Store) Subscribed() bool {
	if s.rev == nil {
		return false
	}
	s.rev.mu.RLock()
	defer s.rev.mu.RUnlock()
	return s.rev.live()
}

// subscribe runs until ctx ends: it keeps one subscription to the
// revocation channel, replacing it after any failure, and keeps s.rev's
// state in step with it.
func (s *Store) subscribe(ctx context.Context) {
	defer close(s.subDone)
	wait := resubscribeAfter
	for ctx.Err() == nil {
		if s.subscription(ctx) {
			wait = resubscribeAfter
		} else {
			wait = min(2*wait, resubscribeMax)
		}
		s.rev.setUp(false)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// subscription runs one subscription until it fails or ctx ends. It
// reports whether Redis confirmed it.
func (s *Store) subscription(ctx context.Context) (confirmed bool) {
	ps := s.client.Subscribe(ctx, s.prefix+revocationChannel)
	defer ps.Close()
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go s.keepAlive(pctx, ps)
	started := time.Now().UnixNano()
	for {
		// Reads time out so that a silent connection is noticed: once
		// the lease has run out (no PONG within leaseFor) it is replaced.
		msg, err := ps.ReceiveTimeout(ctx, leaseEvery)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil &&
				time.Now().UnixNano()-max(s.rev.proven.Load(), started) < int64(2*leaseFor) {
				continue
			}
			return confirmed
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				return confirmed
			}
			confirmed = true
			// Confirmed: every revocation published from now on arrives.
			// The cache starts empty, and is used once a PONG proves the
			// connection (keepAlive sends the first PING at once).
			s.rev.setUp(true)
		case *redis.Message:
			s.rev.evict(m.Payload)
		case *redis.Pong:
			if sent, err := strconv.ParseInt(m.Payload, 10, 64); err == nil && sent > s.rev.proven.Load() {
				s.rev.proven.Store(sent)
			}
		}
	}
}

// keepAlive PINGs the subscription every leaseEvery with the send time as
// payload (its PONG proves the connection up to then), and re-reads the
// epoch every epochEvery.
func (s *Store) keepAlive(ctx context.Context, ps *redis.PubSub) {
	t := time.NewTicker(leaseEvery)
	defer t.Stop()
	lastEpoch := time.Time{}
	for {
		now := time.Now()
		if err := ps.Ping(ctx, strconv.FormatInt(now.UnixNano(), 10)); err != nil && ctx.Err() != nil {
			return
		}
		if now.Sub(lastEpoch) >= epochEvery {
			lastEpoch = now
			rctx, cancel := s.ctx(ctx)
			if e, err := s.client.Get(rctx, s.prefix+epochKey).Result(); err == nil {
				s.rev.flushEpoch(e)
			} else if errors.Is(err, redis.Nil) {
				s.rev.flushEpoch("")
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
