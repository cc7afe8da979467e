package redisstore_test

import (
	"bufio"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stepgate/stepgate/challenge/redisstore"
	"github.com/stepgate/stepgate/challenge/redisstore/redistest"
)

func TestPoolSizeOption(t *testing.T) {
	if got, want := redisstore.DefaultPoolSize(), max(10*runtime.GOMAXPROCS(0), 64); got != want {
		t.Errorf("DefaultPoolSize: got %d; want %d", got, want)
	}
	tests := []struct {
		name     string
		poolSize int
		want     int
	}{
		{"zero is the default", 0, redisstore.DefaultPoolSize()},
		{"small", 3, 3},
		{"large", 500, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, redisstore.Options{Addr: "127.0.0.1:1", PoolSize: tt.poolSize})
			if got := redisstore.ClientOptions(s).PoolSize; got != tt.want {
				t.Errorf("client PoolSize: got %d; want %d", got, tt.want)
			}
		})
	}
	if _, err := redisstore.New(redisstore.Options{Addr: "127.0.0.1:1", PoolSize: -1}); err == nil {
		t.Errorf("New with PoolSize -1: got nil error; want an error")
	}
}

// TestPoolSizeBoundsConnections runs many more concurrent calls than the
// pool has connections on a real server: every call must succeed (callers
// wait their turn rather than fail) and the server must see no more
// connections from the store than PoolSize.
func TestPoolSizeBoundsConnections(t *testing.T) {
	addr := redistest.Start(t)
	const poolSize, calls = 3, 60
	s := newStore(t, redisstore.Options{Addr: addr, KeyPrefix: randomPrefix(t), PoolSize: poolSize, Timeout: 5 * time.Second})
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for range calls {
		wg.Go(func() {
			if _, err := s.Revoked(t.Context(), "jti", "e"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Revoked with the pool busy: got %v; want nil (a caller waits for a connection)", err)
	}
	// Idle connections stay in the pool, so the server still counts them.
	if got := storeConnections(t, addr); got < 1 || got > poolSize {
		t.Errorf("connections from the store: got %d; want 1..%d", got, poolSize)
	}
}

// storeConnections is the number of clients connected to addr other than
// the one asking.
func storeConnections(t *testing.T, addr string) int {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1})
	defer c.Close()
	info, err := c.Info(t.Context(), "clients").Result()
	if err != nil {
		t.Fatalf("INFO clients: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "connected_clients:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("connected_clients %q: %v", v, err)
			}
			return n - 1
		}
	}
	t.Fatalf("INFO clients without connected_clients:\n%s", info)
	return 0
}
