// Command bare is the baseline for bench/load.sh: a plain fasthttp server that answers every request with
// the bytes of one file, as a cache hit would, with no parsing and no cache.
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
	flag.Parse()
	body, err := os.ReadFile(*file)
	if err != nil {
		log.Fatalf("cannot read -body: %v", err)
	}
	srv := &fasthttp.Server{NoDefaultServerHeader: true, Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(body)
	}}
	log.Fatal(srv.ListenAndServe(*listen))
}
