package redistest

import "testing"

func TestStart(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no password", Config{}},
		{"password", Config{Password: `p"a ss\word`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := StartServer(t, tt.cfg)
			if err := ping(s.Addr); err != nil {
				t.Fatalf("ping %s: %v", s.Addr, err)
			}
			s.Stop()
			s.Stop() // idempotent
			if err := ping(s.Addr); err == nil {
				t.Fatalf("ping %s after Stop: got nil; want an error", s.Addr)
			}
		})
	}
}
