# The two commands a newcomer needs: `make run` and `make test`.
GO ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOVULNCHECK ?= golang.org/x/vuln/cmd/govulncheck@v1.9.0
# The Go vulnerability database as the module proxy serves it (its data/osv holds one OSV file per
# advisory, which govulncheck reads with -db file://), so lint needs no network beyond the proxy.
# Bump the version for newer advisories, or run `make lint VULNDB=golang.org/x/vulndb@latest`.
VULNDB ?= golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018

.PHONY: run test build mailpit lint bench fuzz clean

## run: the service with working defaults (local PostgreSQL, Mailpit, demo content)
run:
	./scripts/run-dev

## test: every test, against a real PostgreSQL, real SMTP servers (one of them Mailpit) and headless Chromium
test: mailpit
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

## build: a static binary in ./bin/newsletter
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/newsletter ./cmd/newsletter

## mailpit: bin/mailpit, the mail catcher with its web UI, built once (needs Node.js and npm)
mailpit:
	GO=$(GO) ./scripts/build-mailpit

## lint: gofmt, go vet, staticcheck and govulncheck (which also judges the Go release in use)
lint:
	@files=$$(git ls-files '*.go' 2>/dev/null); [ -n "$$files" ] || files=$$(find . -name '*.go' -not -path './.git/*'); \
	unformatted=$$(gofmt -l $$files); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@vulndb=$$($(GO) mod download -json $(VULNDB) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	if [ ! -d "$$vulndb/data/osv" ]; then echo "no vulnerability database from $(VULNDB)"; exit 1; fi; \
	echo "$(GO) run $(GOVULNCHECK) -db file://$$vulndb/data/osv ./..."; \
	$(GO) run $(GOVULNCHECK) -db "file://$$vulndb/data/osv" ./...

## bench: the sending engine against a local sink, then through a 50 ms round trip (BDAT, DATA), then the Go benchmarks
bench:
	$(GO) run ./cmd/newsletter bench send --readers 100000
	NEWSLETTER_SEND_CONCURRENCY=4 $(GO) run ./cmd/newsletter bench send --readers 800 --rtt 50ms
	NEWSLETTER_SEND_CONCURRENCY=4 $(GO) run ./cmd/newsletter bench send --readers 800 --rtt 50ms --data
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
