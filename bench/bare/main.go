// Command bare is the baseline of the wrk scripts in bench/: a plain fasthttp server with no parsing and
// no cache. With -body it answers every request with the bytes of one file, as a cache hit would
// (bench/hits.sh); with -upstream it forwards every request to that address and returns the answer, as a
// bare reverse proxy does (bench/misses.sh).
package main

import (
	"flag"
	"log"
	"os"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4399", "address to listen on")
	file := flag.String("body", "", "file whose bytes every answer carries")
	upstream := flag.String("upstream", "", "host:port to forward every request to, instead of -body")
	flag.Parse()
	var handler fasthttp.RequestHandler
	switch {
	case *upstream != "":
		hc := &fasthttp.HostClient{Addr: *upstream, MaxConns: 1024}
		handler = func(ctx *fasthttp.RequestCtx) {
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			ctx.Request.CopyTo(req)
			req.Header.Del("Connection")
			if err := hc.Do(req, &ctx.Response); err != nil {
				ctx.Error(err.Error(), fasthttp.StatusBadGateway)
			}
		}
	case *file != "":
		body, err := os.ReadFile(*file)
		if err != nil {
			log.Fatalf("cannot read -body: %v", err)
		}
		handler = func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.Response.SetBodyRaw(body)
		}
	default:
		log.Fatal("give -body or -upstream")
	}
	srv := &fasthttp.Server{NoDefaultServerHeader: true, Handler: handler}
	log.Fatal(srv.ListenAndServe(*listen))
}
