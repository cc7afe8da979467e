// Command memstore-rss measures the memory an embedded store
// (challenge.MemoryStore) takes for many pending challenges: it stores
// -n codes shaped as the Service stores them (a 32-byte MAC, an address,
// an expiry) through the Store interface, collects garbage, and prints the
// process's resident memory from /proc/self/status (Linux only).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/stepgate/stepgate/challenge"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "memstore-rss:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("memstore-rss", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 100_000, "pending codes to store")
	if err := fs.Parse(args); err != nil {
		return err
	}

	if *n < 1 {
		return fmt.Errorf("-n %d: want at least 1", *n)
	}
	runtime.GC()
	before, err := procStatus()
	if err != nil {
		return err
	}
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	// The codes go in through the Store interface, as the Service puts
	// them, not through MemoryStore's own methods.
	var store challenge.Store = challenge.NewMemoryStore(0)
	defer store.Close()

	ctx := context.Background()
	exp := time.Now().Add(5 * time.Minute)
	key := make([]byte, 32)
	for i := range *n {
		// Keys and MACs are random, as the Service's keyed hashes are, so
		// that nothing is shared or compressed between entries.
		if _, err := rand.Read(key); err != nil {
			return err
		}
		mac := make([]byte, 32)
		if _, err := rand.Read(mac); err != nil {
			return err
		}
		code := challenge.Code{
			MAC:       mac,
			Email:     fmt.Sprintf("user%06d@example.com", i),
			ExpiresAt: exp,
		}
		if err := store.PutCode(ctx, hex.EncodeToString(key), code, 5*time.Minute); err != nil {
			return fmt.Errorf("put code %d: %w", i, err)
		}
	}
	runtime.GC()
	debug.FreeOSMemory()
	after, err := procStatus()
	if err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)

	fmt.Fprintf(stdout, "pending codes:          %d\n", *n)
	fmt.Fprintf(stdout, "VmRSS before:           %s\n", before["VmRSS"])
	fmt.Fprintf(stdout, "VmRSS after GC:         %s\n", after["VmRSS"])
	fmt.Fprintf(stdout, "VmHWM (peak RSS):       %s\n", after["VmHWM"])
	grown := float64(ms.HeapInuse) - float64(ms0.HeapInuse)
	fmt.Fprintf(stdout, "Go heap growth:         %.1f MiB (%.0f bytes per code)\n",
		grown/(1<<20), grown/float64(*n))
	// The store must still be reachable here, or the collector above
	// would have freed the codes being measured.
	runtime.KeepAlive(store)
	return nil
}

// procStatus returns the Vm* lines of /proc/self/status, by name.
func procStatus() (map[string]string, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("read memory usage (Linux only): %w", err)
	}
	defer f.Close()
	m := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.HasPrefix(name, "Vm") {
			m[name] = strings.TrimSpace(value)
		}
	}
	return m, sc.Err()
}
