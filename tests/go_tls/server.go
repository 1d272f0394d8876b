// A keep-alive HTTPS server on Go's crypto/tls and net/http, what a keepstore speaks, for
// tests/net_tls_go.rs. It prints its port, then serves: PUT /p answers "got N" with the body's
// length, GET /big 5 MiB, GET /conns the connections accepted so far and this connection's TLS
// version and cipher suite (hex). Go's TLS 1.3 server sends its session tickets in its first
// flight and picks the cipher suite by its own order. It exits when its stdin closes (its
// test went away). Go 1.13 and later.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"io/ioutil"
	"math/big"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

func main() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	template := x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	body := make([]byte, 5<<20)
	for i := range body {
		body[i] = byte(i % 253)
	}
	var conns int64
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	})
	mux.HandleFunc("/p", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(ioutil.Discard, r.Body)
		fmt.Fprintf(w, "got %d", n)
	})
	mux.HandleFunc("/conns", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d %04x %04x", atomic.LoadInt64(&conns), r.TLS.Version, r.TLS.CipherSuite)
	})
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	server := &http.Server{
		Handler:   mux,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		ConnState: func(_ net.Conn, state http.ConnState) {
			if state == http.StateNew {
				atomic.AddInt64(&conns, 1)
			}
		},
	}
	fmt.Println(listener.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	go func() {
		io.Copy(ioutil.Discard, os.Stdin)
		os.Exit(0)
	}()
	panic(server.ServeTLS(listener, "", ""))
}
