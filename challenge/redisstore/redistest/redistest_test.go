package redistest

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

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

// inline sends one inline command and returns the first reply line.
func inline(t *testing.T, addr, cmd string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	if strings.HasPrefix(line, "$") && line != "$-1\r\n" {
		if line, err = r.ReadString('\n'); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	return strings.TrimSpace(line)
}

func TestRestart(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // GET k after the restart
	}{
		{"no persistence comes back empty", Config{}, "$-1"},
		{"append-only keeps every write through a kill", Config{AppendOnly: true}, "v"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := StartServer(t, tt.cfg)
			if got := inline(t, s.Addr, "SET k v"); got != "+OK" {
				t.Fatalf("SET: got %q; want +OK", got)
			}
			s.Restart(t)
			if got := inline(t, s.Addr, "GET k"); got != tt.want {
				t.Fatalf("GET after Restart: got %q; want %q", got, tt.want)
			}
			s.Stop()
			if err := ping(s.Addr); err == nil {
				t.Fatalf("ping %s after Stop: got nil; want an error", s.Addr)
			}
		})
	}
}
