package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// TestRuntimeConfig checks the runtime and cache keys: defaults, the
// memory limit derived from the cgroup, explicit sizes, and the refusals.
func TestRuntimeConfig(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, baseSections+baseRules), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Runtime.GCPercent != 200 || cfg.Runtime.MemoryLimit != "auto" {
		t.Errorf("runtime defaults: got %+v; want gc_percent 200, memory_limit auto", cfg.Runtime)
	}
	for key, got := range map[string]int{
		"identity.jwt.cache_size":           cfg.Identity.JWT.CacheSize,
		"identity.jwt.invalid_cache_size":   cfg.Identity.JWT.InvalidCacheSize,
		"second_factor.cache_size":          cfg.SecondFactor.CacheSize,
		"store.redis.revocation_cache_size": cfg.Store.Redis.RevocationCacheSize,
	} {
		if got != 10000 {
			t.Errorf("%s: default %d; want 10000", key, got)
		}
	}

	dir := t.TempDir()
	old := cgroupMemoryMax
	t.Cleanup(func() { cgroupMemoryMax = old })
	cgroupMemoryMax = filepath.Join(dir, "memory.max")
	limits := []struct {
		value, cgroup string
		want          int64
	}{
		{"auto", "536870912\n", 536870912 / 10 * 9},
		{"auto", "max\n", defaultMemoryLimit},
		{"auto", "", defaultMemoryLimit}, // no cgroup file
		{"off", "536870912\n", 0},
		{"400MiB", "", 400 << 20},
		{"1GiB", "", 1 << 30},
		{"123456789", "", 123456789},
	}
	for _, l := range limits {
		os.Remove(cgroupMemoryMax)
		if l.cgroup != "" {
			if err := os.WriteFile(cgroupMemoryMax, []byte(l.cgroup), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		got, err := RuntimeConfig{MemoryLimit: l.value}.memoryLimit(0)
		if err != nil || got != l.want {
			t.Errorf("memory_limit %q with cgroup %q: got %d, %v; want %d", l.value, l.cgroup, got, err, l.want)
		}
	}
	os.Remove(cgroupMemoryMax)

	// auto grows with caches sized over their defaults, outside a
	// container with a limit only; explicit sizes and a cgroup are kept.
	big := *cfg
	big.Identity.JWT.CacheSize = 65536
	big.SecondFactor.CacheSize = 65536
	big.Store.Redis.RevocationCacheSize = 1 << 20 // the memory store has none
	wantExtra := int64(65536-10000) * (tokenCacheEntryBytes + secondFactorEntryBytes)
	if got := big.cacheExcess(); got != wantExtra {
		t.Errorf("cacheExcess with both token caches at 65536: %d; want %d", got, wantExtra)
	}
	if got := cfg.cacheExcess(); got != 0 {
		t.Errorf("cacheExcess at the defaults: %d; want 0", got)
	}
	small := *cfg
	small.SecondFactor.CacheSize = 10
	if got := small.cacheExcess(); got != 0 {
		t.Errorf("cacheExcess with a cache under its default: %d; want 0", got)
	}
	redis := big
	redis.Store.Driver = "redis"
	if got := redis.cacheExcess(); got != wantExtra+int64(1<<20-10000)*revocationCacheEntryBytes {
		t.Errorf("cacheExcess with the redis store: %d; want the revocation cache counted", got)
	}
	if big.Runtime.GCPercent != 200 {
		t.Fatalf("gc_percent %d; the cases below assume the default 200", big.Runtime.GCPercent)
	}
	off := big
	off.Runtime.GCPercent = -1
	if got := off.autoExtra(); got != wantExtra {
		t.Errorf("autoExtra with gc_percent -1: %d; want the excess alone, %d", got, wantExtra)
	}
	for _, l := range []struct {
		value, cgroup string
		want          int64
	}{
		{"auto", "", defaultMemoryLimit + 3*wantExtra}, // gc_percent 200: three times the excess
		{"auto", "max\n", defaultMemoryLimit + 3*wantExtra},
		{"auto", "536870912\n", 536870912 / 10 * 9},
		{"300MiB", "", 300 << 20},
	} {
		os.Remove(cgroupMemoryMax)
		if l.cgroup != "" {
			if err := os.WriteFile(cgroupMemoryMax, []byte(l.cgroup), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		big.Runtime.MemoryLimit = l.value
		got, err := big.Runtime.memoryLimit(big.autoExtra())
		if err != nil || got != l.want {
			t.Errorf("memory_limit %q, cgroup %q, caches of 65536: got %d, %v; want %d", l.value, l.cgroup, got, err, l.want)
		}
	}
	os.Remove(cgroupMemoryMax)

	// baseSections has second_factor: a cache_size goes into it.
	sfCache0 := strings.Replace(baseSections, "second_factor:\n", "second_factor:\n  cache_size: 0\n", 1)
	bad := []struct{ yaml, key string }{
		{"runtime:\n  gc_percent: 0\n", "runtime.gc_percent"},
		{"runtime:\n  gc_percent: -1\n  memory_limit: \"off\"\n", "runtime.gc_percent"},
		{"runtime:\n  memory_limit: lots\n", "runtime.memory_limit"},
		{"runtime:\n  memory_limit: 1MiB\n", "runtime.memory_limit"},
		{"store:\n  redis:\n    revocation_cache_size: -1\n  driver: redis\n", "store.redis.revocation_cache_size"},
	}
	for _, b := range bad {
		_, err := loadConfig(writeConfig(t, baseSections+baseRules+b.yaml), noEnv)
		if err == nil || !strings.Contains(err.Error(), b.key) {
			t.Errorf("%q: got %v; want a problem at %s", b.yaml, err, b.key)
		}
	}
	if _, err := loadConfig(writeConfig(t, sfCache0+baseRules), noEnv); err == nil || !strings.Contains(err.Error(), "second_factor.cache_size") {
		t.Errorf("second_factor.cache_size 0: got %v; want a problem", err)
	}

	for n, want := range map[int64]string{-1 >> 1: "off", 64 << 20: "64MiB", 483183819: "460.8MiB"} {
		if got := memoryLimitText(n); got != want {
			t.Errorf("memoryLimitText(%d) = %q; want %q", n, got, want)
		}
	}

	// applyRuntime sets the collector; restore the test binary's after.
	prevGC := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(prevGC); debug.SetMemoryLimit(prevLimit) })
	cfg.Runtime = RuntimeConfig{GCPercent: 150, MemoryLimit: "300MiB"}
	applyRuntime(cfg)
	if got := debug.SetGCPercent(150); got != 150 {
		t.Errorf("GC percent after applyRuntime: %d; want 150", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Errorf("memory limit after applyRuntime: %d; want %d", got, 300<<20)
	}
}
