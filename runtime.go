package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// RuntimeConfig is the runtime section: the Go garbage collector's knobs,
// which serve applies at start and on every reload (README "Memory").
type RuntimeConfig struct {
	// GCPercent is GOGC: the heap may grow this many percent over the
	// live heap before a collection. Default 200: a proxy's live heap is
	// small (tens of MiB), so collecting half as often costs little
	// memory and saves CPU on every request. -1 turns the proportional
	// trigger off (then memory_limit alone triggers collections).
	GCPercent int `mapstructure:"gc_percent"`
	// MemoryLimit is GOMEMLIMIT, a soft limit on the Go runtime's memory:
	// "auto" (default) is 90% of the container's cgroup memory limit when
	// there is one, else defaultMemoryLimit plus what caches sized over
	// their defaults hold, with gc_percent's headroom (Config.autoExtra);
	// "off" is no limit; or a
	// size in bytes with an optional KiB, MiB or GiB suffix ("400MiB").
	MemoryLimit string `mapstructure:"memory_limit"`
}

// defaultMemoryLimit is "auto" outside a container with a memory limit.
// With gc_percent 200 the heap of a busy proxy (a live heap of 10–20 MiB)
// is collected a third as often as GOGC=100 would, while a process holding
// many pending codes (100,000 users: ~40 MiB live) is held near the limit
// by more frequent collections (8% of the CPU of that flood of sends)
// instead of growing to three times its live heap: 80 MiB peak RSS,
// measured by bench/memstore-rss, against 98 MiB with an 80 MiB limit.
// Beyond it (the memory store's 200,000-code cap with full caches, ~90 MiB
// live) the heap exceeds the soft limit and the runtime caps the collector
// at half the CPU; set memory_limit higher, or off, where that matters
// more than RSS.
const defaultMemoryLimit = 64 << 20

// cgroupMemoryMax is where cgroup v2 publishes the container's memory
// limit (a number, or "max" for none).
var cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// memoryLimit returns the limit in bytes that r.MemoryLimit stands for, 0
// for none. extra is what "auto" adds to defaultMemoryLimit outside a
// container with a limit (Config.cacheExcess).
func (r RuntimeConfig) memoryLimit(extra int64) (int64, error) {
	switch v := strings.TrimSpace(r.MemoryLimit); v {
	case "off", "0":
		return 0, nil
	case "auto", "":
		b, err := os.ReadFile(cgroupMemoryMax)
		if err != nil {
			return defaultMemoryLimit + extra, nil // not in a cgroup v2 container
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 {
			return defaultMemoryLimit + extra, nil // "max": the container has no limit
		}
		return n / 10 * 9, nil
	default:
		return parseSize(v)
	}
}

// parseSize reads a byte count with an optional KiB, MiB or GiB suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want auto, off, or a size such as 400MiB")
	}
	return n * mult, nil
}

func (c *Config) validateRuntime(ps *problems) {
	if c.Runtime.GCPercent < -1 || c.Runtime.GCPercent == 0 {
		ps.add("runtime.gc_percent", "must be -1 (off, with a memory_limit) or at least 1")
	}
	limit, err := c.Runtime.memoryLimit(c.autoExtra())
	if err != nil {
		ps.add("runtime.memory_limit", "%q: %v", c.Runtime.MemoryLimit, err)
	} else if limit > 0 && limit < 32<<20 {
		ps.add("runtime.memory_limit", "%q is below 32MiB: the collector would run all the time", c.Runtime.MemoryLimit)
	}
	if c.Runtime.GCPercent == -1 && err == nil && limit == 0 {
		ps.add("runtime.gc_percent", "-1 (off) needs a runtime.memory_limit, or the heap grows without bound")
	}
}

// applyRuntime sets the collector's knobs from cfg (validated).
func applyRuntime(cfg *Config) {
	debug.SetGCPercent(cfg.Runtime.GCPercent)
	limit, _ := cfg.Runtime.memoryLimit(cfg.autoExtra())
	if limit == 0 {
		limit = -1 >> 1 // math.MaxInt64: no limit
	}
	debug.SetMemoryLimit(limit)
}

// Per-entry memory of each cache, as README's cache table states them:
// the upper bounds TestCacheEntryBytes (identity, secondfactor) and
// TestRevCacheEntryBytes (redisstore) assert on the measured heap.
const (
	tokenCacheEntryBytes      = 500 // identity.jwt.cache_size, ~400 measured
	invalidCacheEntryBytes    = 250 // identity.jwt.invalid_cache_size, ~175 measured
	secondFactorEntryBytes    = 800 // second_factor.cache_size, ~650 measured
	revocationCacheEntryBytes = 200 // store.redis.revocation_cache_size, ~160 measured
)

// autoExtra is what memory_limit "auto" adds to defaultMemoryLimit
// outside a container with a limit: the caches' excess with the
// collector's headroom over it (gc_percent), so that caches sized to the
// active users are collected as rarely as gc_percent asks, not every time
// the heap passes a limit that only just holds them. Measured (BENCHMARKS.md,
// sg-jwks, caches of 65,536): with the excess alone (132.9 MiB) the 50,000
// users ran at 0.71 of the bare proxy, with room for the collector
// (512 MiB, 249 MiB peak RSS) at 0.85.
func (c *Config) autoExtra() int64 {
	gc := int64(max(c.Runtime.GCPercent, 0))
	return c.cacheExcess() * (100 + gc) / 100
}

// cacheExcess is the memory the caches may hold beyond what their default
// sizes hold, which defaultMemoryLimit already allows for: an operator who
// sizes the caches to the active users gets a soft limit that grows with
// them, instead of a collector that runs all the time to keep full caches
// under 64 MiB (BENCHMARKS.md, sg-jwks with caches of 65,536). A cache
// sized below its default gives nothing back: the default limit stays the
// floor.
func (c *Config) cacheExcess() int64 {
	over := func(key string, size int, perEntry int64) int64 {
		d, _ := configDefaults[key].(int)
		if size <= d {
			return 0
		}
		return int64(size-d) * perEntry
	}
	n := over("identity.jwt.cache_size", c.Identity.JWT.CacheSize, tokenCacheEntryBytes) +
		over("identity.jwt.invalid_cache_size", c.Identity.JWT.InvalidCacheSize, invalidCacheEntryBytes) +
		over("second_factor.cache_size", c.SecondFactor.CacheSize, secondFactorEntryBytes)
	if c.Store.Driver == "redis" {
		n += over("store.redis.revocation_cache_size", c.Store.Redis.RevocationCacheSize, revocationCacheEntryBytes)
	}
	return n
}

// memoryLimitText shows a limit the runtime reports (debug.SetMemoryLimit)
// for the start log line: what "auto" came to.
func memoryLimitText(n int64) string {
	switch {
	case n <= 0 || n == -1>>1:
		return "off"
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	default:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + "MiB"
	}
}

// validateCaches checks the cache bounds: each at least 1, so that a 0
// cannot be taken for "off" where it would mean the package default.
func (c *Config) validateCaches(ps *problems) {
	for _, k := range []struct {
		key string
		n   int
	}{
		{"identity.jwt.cache_size", c.Identity.JWT.CacheSize},
		{"identity.jwt.invalid_cache_size", c.Identity.JWT.InvalidCacheSize},
		{"second_factor.cache_size", c.SecondFactor.CacheSize},
	} {
		if k.n < 1 {
			ps.add(k.key, "must be at least 1")
		}
	}
}
