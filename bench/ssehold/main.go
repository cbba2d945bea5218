// Command ssehold opens N concurrent SSE streams through a proxy, holds them, closes them, and
// reports the proxy's resident memory (VmRSS from /proc/PID/status) and goroutines (go_goroutines
// from a Prometheus metrics URL, e.g. Caddy's admin /metrics) before, while open, and after.
//
// Each stream is a GET with Accept: text/event-stream (MCP's standalone server-to-client
// stream, protocol 2025-11-25) on its own TCP connection; a stream counts as open once its first
// event (the null upstream's ": open" comment) has arrived through the proxy.
//
// Output: one line, "SSE streams=N opened=K open_s=.. rss_before_mb=.. rss_open_mb=..
// rss_after_mb=.. goroutines_before=.. goroutines_open=.. goroutines_after=.. failed=.."
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

func goroutines(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "go_goroutines ") {
			n, _ := strconv.ParseFloat(strings.TrimPrefix(l, "go_goroutines "), 64)
			return int(n)
		}
	}
	return -1
}

func main() {
	url := flag.String("url", "", "SSE endpoint")
	token := flag.String("token", "", "file with the bearer token")
	n := flag.Int("n", 1000, "streams")
	hold := flag.Duration("hold", 5*time.Second, "how long to hold the streams open")
	settle := flag.Duration("settle", 5*time.Second, "wait after closing before measuring")
	pid := flag.Int("pid", 0, "proxy PID (for VmRSS)")
	metrics := flag.String("metrics", "", "Prometheus metrics URL of the proxy (go_goroutines)")
	flag.Parse()
	tok, err := os.ReadFile(*token)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ssehold:", err)
		os.Exit(1)
	}
	tr := &http.Transport{MaxIdleConns: 0, MaxConnsPerHost: 0, DisableKeepAlives: true, ForceAttemptHTTP2: false}
	client := &http.Client{Transport: tr}

	gBefore, rBefore := goroutines(*metrics), rssMB(*pid)
	ctx, cancel := context.WithCancel(context.Background())
	var opened, failed atomic.Int64
	var wg, ready sync.WaitGroup
	start := time.Now()
	sem := make(chan struct{}, 100) // open at most 100 at a time
	for i := 0; i < *n; i++ {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			done := false
			mark := func(ok bool) {
				if !done {
					done = true
					if ok {
						opened.Add(1)
					} else {
						failed.Add(1)
					}
					<-sem
					ready.Done()
				}
			}
			defer mark(false)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
			req.Header.Set("Accept", "text/event-stream")
			req.Header.Set("MCP-Protocol-Version", "2025-11-25")
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				return
			}
			br := bufio.NewReader(resp.Body)
			if _, err := br.ReadString('\n'); err != nil {
				return
			}
			mark(true)
			io.Copy(io.Discard, br) // until cancelled
		}()
	}
	ready.Wait()
	openTime := time.Since(start)
	time.Sleep(*hold)
	gOpen, rOpen := goroutines(*metrics), rssMB(*pid)
	cancel()
	wg.Wait()
	tr.CloseIdleConnections()
	time.Sleep(*settle)
	gAfter, rAfter := goroutines(*metrics), rssMB(*pid)
	fmt.Printf("SSE streams=%d opened=%d failed=%d open_s=%.2f rss_before_mb=%.1f rss_open_mb=%.1f rss_after_mb=%.1f goroutines_before=%d goroutines_open=%d goroutines_after=%d\n",
		*n, opened.Load(), failed.Load(), openTime.Seconds(), rBefore, rOpen, rAfter, gBefore, gOpen, gAfter)
}
