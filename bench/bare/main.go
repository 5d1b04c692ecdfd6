// Command bare is the baseline of the wrk scripts in bench/: a plain fasthttp server with no parsing and
// no cache (bench/baseline). With -body it answers every request with the bytes of one file, as a cache hit
// would (bench/hits.sh); with -upstream it forwards every request to that address and returns the answer,
// as a bare reverse proxy does (bench/misses.sh).
package main

import (
	"flag"
	"log"
	"os"

	"github.com/valyala/fasthttp"

	"llmcache/bench/baseline"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4399", "address to listen on")
	file := flag.String("body", "", "file whose bytes every answer carries")
	upstream := flag.String("upstream", "", "host:port to forward every request to, instead of -body")
	flag.Parse()
	var handler fasthttp.RequestHandler
	switch {
	case *upstream != "":
		handler = baseline.ReverseProxy(*upstream)
	case *file != "":
		body, err := os.ReadFile(*file)
		if err != nil {
			log.Fatalf("cannot read -body: %v", err)
		}
		handler = baseline.Fixed(body)
	default:
		log.Fatal("give -body or -upstream")
	}
	srv := &fasthttp.Server{NoDefaultServerHeader: true, Handler: handler}
	log.Fatal(srv.ListenAndServe(*listen))
}
