package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/passkey"
	"github.com/stepgate/stepgate/factors/pgstore"
	"github.com/stepgate/stepgate/factors/sqlitestore"
)

// factorStoreTimeout bounds opening the factor store and checking its keys
// at start.
const factorStoreTimeout = 30 * time.Second

// identifyFactor is the factors.Identify of every stored type: a passkey's
// credential id must be unique; a TOTP factor has nothing to index.
var identifyFactor factors.Identify = passkey.Identify

// openFactors opens the factor store factors.driver names, applies its
// migrations and checks that the configured keys open every stored
// secret; any failure refuses the start, naming the key or the database.
// It then fills the credential lookups (factors.Reindex) that are missing
// (rows stored before the lookup column) or under another key (after the
// encryption key changed); a credential stored twice (possible only before
// the UNIQUE lookup column) is logged as a warning, not a refusal, so that
// `stepgate factors remove` can still open the store to remove one.
func openFactors(cfg *Config, logger *slog.Logger) (factors.Store, *factors.Keyring, error) {
	if !cfg.factorStoreNeeded() {
		return nil, nil, nil
	}
	f := cfg.Factors
	prev := make([][]byte, len(f.PreviousEncryptionKeys))
	for i, k := range f.PreviousEncryptionKeys {
		prev[i] = []byte(k)
	}
	keyring, err := factors.NewKeyring([]byte(f.EncryptionKey), prev...)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), factorStoreTimeout)
	defer cancel()
	var store factors.Store
	switch f.Driver {
	case "sqlite":
		store, err = sqlitestore.Open(ctx, f.SQLite.Path)
	case "postgres":
		store, err = pgstore.Open(ctx, pgstore.Options{DSN: f.Postgres.DSN})
	default:
		err = fmt.Errorf("factors.driver: unknown driver %q", f.Driver)
	}
	// The stores' errors name themselves (factors.sqlite.path: ...,
	// factors: postgres: ...), so they are returned as they are.
	if err != nil {
		return nil, nil, err
	}
	if err := factors.CheckKeys(ctx, store, keyring); err != nil {
		store.Close()
		return nil, nil, err
	}
	r, err := factors.Reindex(ctx, store, keyring, identifyFactor)
	if err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("factors: credential lookups: %w", err)
	}
	if r.Set > 0 {
		logger.Info("factor credential lookups filled", "event", "factors_reindexed", "set", r.Set, "current", r.Current)
	}
	for _, d := range r.Duplicates {
		logger.Warn("a passkey credential is stored twice; remove one of the two factors (stepgate factors remove)", "event", "factor_duplicate", "factor", d)
	}
	return store, keyring, nil
}

// enrolledCollector is stepgate_factors_enrolled{method}: confirmed
// factors per method, counted in the database on scrape (so every replica
// reports the shared number), at most every 30 seconds.
type enrolledCollector struct {
	store factors.Store
	desc  *prometheus.Desc
	mu    sync.Mutex
	last  time.Time
	cache map[string]int
}

func newEnrolledCollector(store factors.Store) *enrolledCollector {
	return &enrolledCollector{store: store, desc: prometheus.NewDesc("stepgate_factors_enrolled",
		"Enrolled (confirmed) second factors by method, in the factor store.", []string{"method"}, nil)}
}

func (c *enrolledCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *enrolledCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.last) > 30*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		counts, err := c.store.Counts(ctx)
		cancel()
		if err == nil {
			c.cache, c.last = counts, time.Now()
		}
	}
	for _, m := range storedMethods {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(c.cache[m]), m)
	}
}
