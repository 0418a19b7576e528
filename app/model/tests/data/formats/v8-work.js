function fib(n){ return n<2?n:fib(n-1)+fib(n-2); }
function hot(){ let s=0; for(let i=0;i<3e6;i++){ s+=Math.sqrt(i); } return s; }
function main(){ let t=0; for(let k=0;k<20;k++){ t+=fib(22)+hot(); } return t; }
console.log(main());
