# A small Ruby program profiled by stackprof in cpu mode (raw stacks), written as JSON.
# ruby stackprof-fib.rb > stackprof-fib.json
require "stackprof"
require "json"

def fib(n)
  n < 2 ? n : fib(n - 1) + fib(n - 2)
end

def build
  Array.new(20_000) { |i| "item #{i}" }.sort.reverse
end

def busy
  10.times do
    fib(20)
    build
  end
end

profile = StackProf.run(mode: :cpu, interval: 1000, raw: true) { busy }
puts JSON.generate(profile)
