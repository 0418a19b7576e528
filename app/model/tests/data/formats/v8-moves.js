function fib(n){ return n<2?n:fib(n-1)+fib(n-2); }
function churn(){ const a=[]; for(let i=0;i<20000;i++) a.push({i, s:"x"+i}); return a.length; }
function main(){ let t=0; for(let k=0;k<30;k++){ t+=fib(20)+churn(); if (globalThis.gc) gc(); } return t; }
console.log(main());
