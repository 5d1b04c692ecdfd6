// Command fake runs the fake OpenAI-compatible upstream of the tests and benchmarks (bench/fakeupstream)
// as a process of its own, so that a load script can measure a proxy's CPU apart from its upstream's
// (bench/misses.sh). It serves until interrupted.
package main

import (
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"llmcache/bench/fakeupstream"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4390", "address to listen on")
	indent := flag.Bool("indent", false, "answer in indented JSON, as api.openai.com does")
	prose := flag.Bool("prose", false, "answer with paragraphs of Go's documentation (natural text) instead of echoed words")
	answerBytes := flag.Int("answer-bytes", 0, "about how long an answer's text is (0: the fake's default)")
	flag.Parse()
	opts := fakeupstream.Options{Addr: *listen, Indent: *indent, AnswerBytes: *answerBytes}
	if *prose {
		text, err := fakeupstream.GoDocText()
		if err != nil {
			log.Fatalf("cannot read the text to answer with: %v", err)
		}
		opts.Text = text
	}
	fake, err := fakeupstream.Start(opts)
	if err != nil {
		log.Fatalf("cannot start the fake upstream: %v", err)
	}
	defer fake.Close()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
}
