// A Go client like kube-scheduler's extender client (net/http, TLS, one call at a time on a
// kept-alive connection), forced to HTTP/1.1 or HTTP/2: bench/http_versions.py runs it.
//
//	goclient URL CA_FILE BODY_FILE h1|h2 REQUESTS
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"syscall"
	"time"
)

func cpu() time.Duration {
	var r syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r)
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

func main() {
	url, caFile, bodyFile := os.Args[1], os.Args[2], os.Args[3]
	h2 := os.Args[4] == "h2"
	n, _ := strconv.Atoi(os.Args[5])
	ca, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	body, _ := os.ReadFile(bodyFile)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2, MaxIdleConnsPerHost: 4}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	client := &http.Client{Transport: tr}
	for _, verb := range []string{"filter", "prioritize"} {
		var lat []float64
		var proto string
		call := func() {
			resp, err := client.Post(url+"/"+verb, "application/json", bytes.NewReader(body))
			if err != nil {
				panic(err)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			proto = resp.Proto
		}
		for i := 0; i < 50; i++ {
			call()
		}
		c0 := cpu()
		for i := 0; i < n; i++ {
			t := time.Now()
			call()
			lat = append(lat, float64(time.Since(t).Microseconds())/1000)
		}
		c1 := cpu()
		sort.Float64s(lat)
		fmt.Printf("%s %s %s p50 %.2f p99 %.2f client cpu/req %.3f ms\n", os.Args[4], proto, verb, lat[len(lat)/2], lat[len(lat)*99/100], float64((c1-c0).Microseconds())/1000/float64(n))
	}
}
