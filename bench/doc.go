// Package bench holds llmcache's benchmarks (go test -bench . ./bench), the load script load.sh, and in
// fakeupstream/ the fake OpenAI upstream shared by tests, benchmarks and -demo. Every figure is measured
// next to its baseline in the same run; see README.md in this folder for the latest figures.
package bench
