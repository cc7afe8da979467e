package redisstore_test

import (
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stepgate/stepgate/challenge/redisstore"
	"github.com/stepgate/stepgate/challenge/redisstore/redistest"
)

// These tests run two Stores (two replicas) with the revocation cache on
// one real redis-server and check that the cache saves the round trip
// while the subscription delivers, that a revocation on one replica is
// seen at once on the other, and that a lost subscription never hides a
// revocation (fail closed).

// scripts returns how many scripts Redis has run (one per Revoked that
// asks Redis).
func scripts(t *testing.T, rc *redis.Client) int {
	t.Helper()
	info, err := rc.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	n := 0
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		v, _ := strconv.Atoi(calls)
		n += v
	}
	return n
}

// waitSubscribed polls until s's subscription delivers (want true) or is
// seen down (want false).
func waitSubscribed(t *testing.T, s *redisstore.Store, want bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Subscribed() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Subscribed() stayed %v; want %v", !want, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// notRevoked asserts Revoked answers false without error.
func notRevoked(t *testing.T, s *redisstore.Store, jti, epoch string) {
	t.Helper()
	if rev, err := s.Revoked(t.Context(), jti, epoch); err != nil || rev {
		t.Fatalf("Revoked(%s): got %v, %v; want false", jti, rev, err)
	}
}

func TestRevocationCache(t *testing.T) {
	srv := redistest.StartServer(t, redistest.Config{})
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rc.Close() })
	opts := redisstore.Options{Addr: srv.Addr, KeyPrefix: randomPrefix(t), Timeout: time.Second, RevocationCache: 100}
	a, b := newStore(t, opts), newStore(t, opts)
	ctx := t.Context()
	waitSubscribed(t, a, true)
	waitSubscribed(t, b, true)
	epoch, err := a.Epoch(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("no round trip once known", func(t *testing.T) {
		notRevoked(t, b, "t1", epoch)
		before := scripts(t, rc)
		for range 50 {
			notRevoked(t, b, "t1", epoch)
		}
		if n := scripts(t, rc) - before; n != 0 {
			t.Errorf("50 checks of a known token ran %d scripts; want 0", n)
		}
		// Another epoch is never answered from the cache.
		if rev, err := b.Revoked(ctx, "t1", epoch+"x"); err != nil || !rev {
			t.Errorf("Revoked under another epoch: got %v, %v; want true", rev, err)
		}
	})

	t.Run("revocation on another replica", func(t *testing.T) {
		notRevoked(t, b, "t2", epoch)
		notRevoked(t, b, "t2", epoch) // from the cache now
		if err := a.Revoke(ctx, "t2", time.Hour); err != nil {
			t.Fatal(err)
		}
		// The PUBLISH reached b's subscriber when Revoke returned; its
		// read of the message is the only delay.
		deadline := time.Now().Add(2 * time.Second)
		for {
			rev, err := b.Revoked(ctx, "t2", epoch)
			if err == nil && rev {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("revoked on a: b still answers %v, %v", rev, err)
			}
			time.Sleep(time.Millisecond)
		}
		// And on a itself, at once.
		if rev, err := a.Revoked(ctx, "t2", epoch); err != nil || !rev {
			t.Errorf("a: got %v, %v; want revoked", rev, err)
		}
	})

	t.Run("killed subscription fails closed", func(t *testing.T) {
		notRevoked(t, b, "t3", epoch)
		notRevoked(t, b, "t3", epoch) // from the cache now
		if err := rc.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
			t.Fatalf("CLIENT KILL TYPE pubsub: %v", err)
		}
		waitSubscribed(t, b, false)
		// Published while b has no subscription: b never hears of it.
		if err := a.Revoke(ctx, "t3", time.Hour); err != nil {
			t.Fatal(err)
		}
		if rev, err := b.Revoked(ctx, "t3", epoch); err != nil || !rev {
			t.Fatalf("revoked while b's subscription was down: got %v, %v; want refused", rev, err)
		}
		// b subscribes again by itself, starts from an empty cache, and
		// caches again.
		waitSubscribed(t, b, true)
		if rev, err := b.Revoked(ctx, "t3", epoch); err != nil || !rev {
			t.Fatalf("after resubscribing: got %v, %v; want refused", rev, err)
		}
		notRevoked(t, b, "t4", epoch)
		before := scripts(t, rc)
		notRevoked(t, b, "t4", epoch)
		if n := scripts(t, rc) - before; n != 0 {
			t.Errorf("after resubscribing, a known token ran %d scripts; want 0", n)
		}
	})

	t.Run("cache bound", func(t *testing.T) {
		for i := range 300 {
			notRevoked(t, b, "bound"+strconv.Itoa(i), epoch)
		}
		// Only the bound's worth can be answered without Redis.
		before := scripts(t, rc)
		for i := range 300 {
			notRevoked(t, b, "bound"+strconv.Itoa(i), epoch)
		}
		if n := scripts(t, rc) - before; n < 200 {
			t.Errorf("300 tokens through a 100-entry cache ran %d scripts; want at least 200", n)
		}
	})
}

// TestRevocationCacheSilentConnection freezes the subscription's TCP
// connection without closing it (a partition): within the lease the cache
// stops answering, so a revocation published meanwhile is never hidden.
func TestRevocationCacheSilentConnection(t *testing.T) {
	srv := redistest.StartServer(t, redistest.Config{})
	fz := newFreezer(t, srv.Addr)
	prefix := randomPrefix(t)
	a := newStore(t, redisstore.Options{Addr: srv.Addr, KeyPrefix: prefix, Timeout: time.Second, RevocationCache: 100})
	b := newStore(t, redisstore.Options{Addr: fz.addr, KeyPrefix: prefix, Timeout: 300 * time.Millisecond, RevocationCache: 100})
	ctx := t.Context()
	waitSubscribed(t, b, true)
	epoch, err := a.Epoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	notRevoked(t, b, "s1", epoch)
	notRevoked(t, b, "s1", epoch)

	fz.freeze()
	if err := a.Revoke(ctx, "s1", time.Hour); err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, b, false)
	// b cannot reach Redis either: it must not answer "not revoked".
	if rev, err := b.Revoked(ctx, "s1", epoch); err == nil && !rev {
		t.Fatal("revoked during a partition: b answered not revoked from its cache")
	}
	fz.thaw()
	waitSubscribed(t, b, true)
	if rev, err := b.Revoked(ctx, "s1", epoch); err != nil || !rev {
		t.Fatalf("after the partition: got %v, %v; want revoked", rev, err)
	}
}

// freezer is a TCP proxy to Redis whose connections can be frozen: bytes
// stop flowing both ways, but nothing is closed.
type freezer struct {
	addr string
	mu   sync.Mutex
	cond *sync.Cond
	cold bool
}

func newFreezer(t *testing.T, upstream string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{addr: ln.Addr().String()}
	f.cond = sync.NewCond(&f.mu)
	var wg sync.WaitGroup
	var conns []net.Conn
	var cmu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		f.thaw()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			cmu.Lock()
			conns = append(conns, c, u)
			cmu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); f.pipe(u, c); u.Close(); c.Close() }()
			go func() { defer wg.Done(); f.pipe(c, u); u.Close(); c.Close() }()
		}
	}()
	return f
}

// pipe copies src to dst, holding every chunk while frozen.
func (f *freezer) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.mu.Lock()
			for f.cold {
				f.cond.Wait()
			}
			f.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *freezer) freeze() { f.mu.Lock(); f.cold = true; f.mu.Unlock() }
func (f *freezer) thaw()   { f.mu.Lock(); f.cold = false; f.cond.Broadcast(); f.mu.Unlock() }
