# ds01 recipes: each wraps plain go commands (the README's commands need no just).

staticcheck := "honnef.co/go/tools/cmd/staticcheck@v0.8.2"

# build the ds01 binary into ./bin
build:
    go build -o bin/ds01 ./cmd/ds01

# the Debian package dist/ds01_VERSION_amd64.deb (see the README's admin section)
package version="":
    scripts/package-deb {{version}}

# install test dependencies (apt) and run every test against the real Docker daemon
test:
    scripts/setup && go test -count=1 -timeout 30m ./...

# fast tests only: no Docker daemon, no mmdebstrap
test-short:
    go test -short ./...

# every fuzz target for a bounded number of inputs each
fuzz budget="100000x":
    scripts/fuzz {{budget}}

# benchmarks, with ratios against the alternatives measured in the same run
bench *args:
    scripts/setup && go run ./internal/bench {{args}}

# the main job: a local Debian base, your image on it, shown working in a container
demo *args:
    scripts/setup && go run ./cmd/ds01 demo {{args}}

# gofmt, go vet and staticcheck
lint:
    test -z "$(gofmt -l .)" || { gofmt -l .; exit 1; }
    go vet ./...
    go run {{staticcheck}} ./...
