-- A small program with named cost centres: recursion, a fold and a sort.
import Data.List (sort, foldl')

fib :: Int -> Integer
fib n = if n < 2 then toInteger n else fib (n - 1) + fib (n - 2)

sumSquares :: Int -> Int
sumSquares n = foldl' (\acc x -> acc + x * x) 0 [1 .. n]

sortedChecksum :: Int -> Int
sortedChecksum n = sum (take 10 (sort [ (i * 7919) `mod` 10007 | i <- [1 .. n] ]))

main :: IO ()
main = do
  print (fib 27)
  print (sumSquares 3000000)
  print (sortedChecksum 200000)
