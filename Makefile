# The README's two commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
LUA ?= lua5.4
PORT ?= 8000
LIB := build/luvrs.so
export LUA_PATH := ./lua/?.lua;./lua/?/init.lua;;
export LUA_CPATH := ./build/?.so;;

.PHONY: all build run test test-rust test-lua test-e2e test-rock lint bench deps deps-run deps-bench clean

all: build

deps:
	@scripts/deps.sh test

deps-run:
	@scripts/deps.sh run

deps-bench:
	@scripts/deps.sh bench

$(LIB): Cargo.toml $(wildcard src/*.rs src/*/*.rs)
	cargo build --release --features module
	@mkdir -p build
	@# A new file renamed into place: overwriting the old one would crash processes that mapped it.
	cp target/release/libluvrs.so $(LIB).tmp && mv -f $(LIB).tmp $(LIB)

build: $(LIB)

run: deps-run build
	$(LUA) bin/luvicorn examples/hello.lua --host 127.0.0.1 --port $(PORT)

test: deps build lint test-rust test-lua test-e2e test-rock
	@echo "make test: all checks passed"

test-rust:
	cargo test --quiet

test-lua: build
	busted

test-e2e: build
	python3 -m unittest discover -s tests -p 'test_*.py'

test-rock:
	scripts/rock-check.sh

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --features module --lib -- -D warnings
	luacheck --quiet lua spec bin examples tests bench

bench: deps-bench build
	bench/run.sh

clean:
	rm -rf build .tree target
