// The program behind node-fib.cpuprofile: two hot functions under one caller.
function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
function sortMany() { const a = []; for (let i = 0; i < 100000; i++) a.push((i * 7919) % 10007); a.sort((x, y) => x - y); return a.length; }
function busy() { let s = 0; const end = Date.now() + 400; while (Date.now() < end) { s += fib(24); s += sortMany(); } return s; }
console.log(busy());
