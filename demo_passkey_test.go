package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestDemoPasskeys: the demo offers passkeys on localhost (browsers refuse
// them on an IP address), and says where in its tour; on a listen address
// localhost does not reach it has none.
func TestDemoPasskeys(t *testing.T) {
	cfg, err := demoConfig("127.0.0.1:8080", "127.0.0.1:9090", "http://127.0.0.1:3000", randomSecret(), randomSecret(), "/nonexistent/f.db")
	if err != nil {
		t.Fatalf("demoConfig: %v", err)
	}
	if !slices.Contains(cfg.Factors.Enabled, "passkey") || cfg.Server.PublicURL != "http://localhost:8080" {
		t.Fatalf("demo factors %v, public_url %q; want passkey on http://localhost:8080", cfg.Factors.Enabled, cfg.Server.PublicURL)
	}
	var tour bytes.Buffer
	printTour(&tour, "http://127.0.0.1:8080", "http://127.0.0.1:9090", "/.stepup")
	if !strings.Contains(tour.String(), "http://localhost:8080/.stepup/factors/passkey") {
		t.Fatalf("tour does not point at the passkey page on localhost:\n%s", tour.String())
	}
	cfg, err = demoConfig("127.0.0.2:8080", "127.0.0.1:9090", "http://127.0.0.1:3000", randomSecret(), randomSecret(), "/nonexistent/f.db")
	if err != nil {
		t.Fatalf("demoConfig on 127.0.0.2: %v", err)
	}
	if slices.Contains(cfg.Factors.Enabled, "passkey") {
		t.Fatalf("passkeys enabled on 127.0.0.2, which localhost does not reach")
	}
}
