// Command conn-rss measures the resident memory that idle keep-alive
// connections cost a running stepgate (README "Connection limit"): it reads
// the process's VmRSS, opens -conns connections to -addr, sends one GET on
// each and keeps them open and idle, reads VmRSS again, and prints the
// difference per connection. Linux only (/proc).
//
//	go build -o /tmp/stepgate . && /tmp/stepgate serve -config config.yaml &
//	go run ./bench/conn-rss -addr 127.0.0.1:8080 -pid $! -conns 10000
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "stepgate's proxy address")
	pid := flag.Int("pid", 0, "stepgate's process id")
	conns := flag.Int("conns", 10000, "idle keep-alive connections to open")
	path := flag.String("path", "/", "the path each connection requests once")
	flag.Parse()
	if *pid == 0 {
		log.Fatal("-pid is required")
	}
	before := rss(*pid)
	open := make([]net.Conn, 0, *conns)
	codes := map[int]int{}
	for i := range *conns {
		c, err := net.DialTimeout("tcp", *addr, 5*time.Second)
		if err != nil {
			log.Fatalf("connection %d: %v", i, err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: bench.local\r\n\r\n", *path)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			log.Fatalf("connection %d: %v", i, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		codes[res.StatusCode]++
		c.SetDeadline(time.Time{})
		open = append(open, c)
	}
	// Let the server settle (its goroutines park on the next read).
	time.Sleep(2 * time.Second)
	after := rss(*pid)
	fmt.Printf("connections: %d (statuses %v)\n", len(open), codes)
	fmt.Printf("VmRSS before: %d KiB, with the connections idle: %d KiB\n", before, after)
	fmt.Printf("per connection: %.1f KiB\n", float64(after-before)/float64(len(open)))
	for _, c := range open {
		c.Close()
	}
}

// rss reads VmRSS of pid in KiB.
func rss(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		log.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	log.Fatal("no VmRSS")
	return 0
}
