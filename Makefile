# The two commands a newcomer needs: `make run` and `make test`.
GO ?= go
MAILPIT ?= github.com/axllent/mailpit@v1.33.1
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: run test build lint bench fuzz clean

## run: the service with working defaults (local PostgreSQL, Mailpit, demo content)
run:
	./scripts/run-dev

## test: every test, against a real PostgreSQL, a real SMTP server and headless Chromium
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

## build: a static binary in ./bin/newsletter
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/newsletter ./cmd/newsletter

## lint: gofmt, go vet and staticcheck
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## bench: the sending engine against a local sink, then the Go benchmarks
bench:
	$(GO) run ./cmd/newsletter bench send --readers 100000
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
