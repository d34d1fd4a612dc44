"""Answer forms graded by hand: (response, gold answer, correct?), by class.

Realistic MATH / GSM8K-style endings, right and wrong, covering the forms
where an extractor goes wrong (a leading number cut out of 3\\sqrt{2} or
2^{10}, a negative fraction read as its numerator, the Unicode minus, .5,
units with exponents, dollar amounts read as a LaTeX span, several boxed
answers, lists, numbers grouped in other locales) and the forms that have
always worked. Wrong answers are written in the same forms, so that a false
pass shows. Rows marked "math-verify's tests" carry the (response, gold,
verdict) facts of math-verify's own test suite (tests/test_all.py,
test_boxed.py), restated in this table's form; the rest were written and
graded by hand. tests/test_math_answers.py measures the math reward and
math-verify's own parse + verify against them (`python -m
tests.test_math_answers` prints the table docs/commands/score.md shows).
"""

CLASSES = {
    "boxed": [
        (r"Adding them gives $12 + 30 = 42$, so the answer is $\boxed{42}$.", "42", True),
        (r"Therefore $\boxed{41}$.", "42", False),
        (r"The probability is $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}", True),
        (r"The probability is $\boxed{\dfrac{2}{4}}$.", "1/2", True),
        (r"The probability is $\boxed{\frac{1}{3}}$.", r"\frac{1}{2}", False),
        (r"So $x = \boxed{-\frac{3}{4}}$.", r"-\frac{3}{4}", True),
        (r"So $x = \boxed{-\frac{3}{4}}$.", "-3", False),
        (r"So $x = \boxed{\frac{3}{4}}$.", r"-\frac{3}{4}", False),
        (r"The distance is $\boxed{3\sqrt{2}}$.", r"3\sqrt{2}", True),
        (r"The distance is $\boxed{3\sqrt{2}}$.", "3", False),
        (r"The distance is $\boxed{\sqrt{18}}$.", r"3\sqrt{2}", True),
        (r"The area is $\boxed{4\pi}$.", r"4\pi", True),
        (r"The area is $\boxed{4\pi}$.", "4", False),
        (r"There are $\boxed{2^{10}}$ subsets.", "1024", True),
        (r"There are $\boxed{2^{10}}$ subsets.", "2", False),
        (r"$\boxed{1{,}000}$", "1000", True),
        (r"The roots are $\boxed{2, 3}$.", "2, 3", True),
        (r"The roots are $\boxed{2, 3}$.", "2, 4", False),
        (r"The point is $\boxed{(1, -2)}$.", "(1,-2)", True),
        (r"The point is $\boxed{(1, 2)}$.", "(1,-2)", False),
        (r"The interval is $\boxed{[0, 5)}$.", "[0,5)", True),
        (r"$\boxed{\frac{\sqrt{2}}{2}}$", r"\frac{1}{\sqrt{2}}", True),
        (r"$\boxed{2^{-1}}$", "0.5", True),
        (r"$\boxed{x^2 + 2x + 1}$", "(x+1)^2", True),
        (r"$\boxed{x^2 + 2x}$", "(x+1)^2", False),
        (r"$\boxed{50\%}$", "50", True),
        (r"$\boxed{90^\circ}$", "90", True),
        (r"The answer is $\boxed{12\text{ cm}^2}$.", "12", True),
    ],
    "several boxes": [
        (r"I first thought \boxed{42} but actually it is \boxed{24}.", "42", False),
        (r"I first thought \boxed{42} but actually it is \boxed{24}.", "24", True),
        (r"First $\boxed{3}$, but after fixing the sign $\boxed{4}$.", "4", True),
        (r"First $\boxed{3}$, but after fixing the sign $\boxed{4}$.", "3", False),
        (r"first \boxed{3}, but after fixing the sign \boxed{4}", "4", True),
        (r"first \boxed{3}, but after fixing the sign \boxed{4}", "3, 4", False),
        (r"$\boxed{3}$ or $\boxed{4}$", "4", True),
        (r"$\boxed{3}$ or $\boxed{4}$", "3,4", False),
        (r"$\boxed{3} \to \boxed{4}$", "4", True),
        (r"$\boxed{3} \to \boxed{4}$", "3", False),
        (r"The answer is \boxed{3}, or rather \boxed{4}.", "4", True),
        (r"So $x = \boxed{5}$ and then $y = \boxed{7}$.", "7", True),
        (r"So $x = \boxed{5}$ and then $y = \boxed{7}$.", "5, 7", False),
        (r"\fbox{12} is wrong; the area is \boxed{16}.", "16", True),
        (r"\fbox{12} is wrong; the area is \boxed{16}.", "12", False),
        ("We get \\boxed{\\frac{1}{2}}.\n\nWait, I dropped a factor of 2: \\boxed{1}.", "1", True),
        ("We get \\boxed{\\frac{1}{2}}.\n\nWait, I dropped a factor of 2: \\boxed{1}.", r"\frac{1}{2}", False),
        (r"$\boxed{1}\boxed{2}$", "2", True),  # math-verify's tests read this as the set {1, 2}
        (r"$\boxed{1}\boxed{2}$", "1,2", False),
        (r"The roots are $\boxed{2, 3}$; check: $\boxed{2}$ and $\boxed{3}$ both work.", "3", True),
        (
            "the answer should be \\boxed{004}.\n\nBut let me check again: the remainder is 004. So, \\boxed{004} is correct.\n\n**Final Answer**\n\\boxed{004}",
            "4",
            True,
        ),  # math-verify's tests
        (
            "could answer therefore\\boxed{840}.,but let me put this after explain.\n\n**Final Answer**\n\\boxed{840}",
            "840",
            True,
        ),  # math-verify's tests
        (r"A set answer is one box: $\boxed{\{1, 2\}}$.", "1, 2", True),
    ],
    "LaTeX after the answer phrase, without delimiters": [
        (r"The answer is 2^{10}.", "1024", True),
        (r"The answer is 2^{10}.", "2", False),
        (r"The answer is 2^{10} subsets.", "1024", True),
        (r"The answer is 2^{10} subsets.", "10", False),
        (r"The answer is 2^{10}, which is 1024.", "1024", True),
        (r"the answer is \frac{3}{4}", "0.75", True),
        (r"the answer is \frac{3}{4}", "3", False),
        (r"Final Answer: \sqrt{2}/2", r"\frac{\sqrt{2}}{2}", True),
        (r"Final Answer: \sqrt{2}/2", "2", False),
        (r"The answer is x^2 + 2x + 1.", "(x+1)^2", True),
        (r"The answer is x^2 + 2x + 1.", "2", False),
        (r"The answer is x^2 + 2x + 1.", "1", False),
        (r"The answer is 10^{-3}.", "0.001", True),
        (r"The answer is 10^{-3}.", "10", False),
        (r"Answer: 5\sqrt{3} units", r"5\sqrt{3}", True),
        (r"Answer: 5\sqrt{3} units", "5", False),
        (r"The answer is \frac{1}{2} of the pie.", "1/2", True),
        (r"The answer is 3^4 = 81.", "81", True),
        (r"The answer is 3^4 = 81.", "3", False),
        (r"The answer is \pi/4.", r"\frac{\pi}{4}", True),
        (r"The answer is \pi/4.", "4", False),
        (r"The answer is 2\frac{1}{2} cups.", "5/2", True),
        (r"The answer is 2\frac{1}{2} cups.", "2", False),
        (r"The answer is: \dfrac{7}{8}", "0.875", True),
        (r"The answer is a_5 = 17.", "17", True),
    ],
    "the answer phrase and inline math": [
        (r"The answer is $3\sqrt{2}$.", r"3\sqrt{2}", True),
        (r"The answer is $3\sqrt{2}$.", "3", False),
        (r"The answer is 3\sqrt{2}.", r"3\sqrt{2}", True),
        (r"The answer is $4\pi$.", r"4\pi", True),
        (r"The answer is $4\pi$.", "4", False),
        (r"The answer is $2^{10}$.", "1024", True),
        (r"The answer is $2^{10}$.", "2", False),
        ("The answer is 2.5e3.", "2500", True),
        ("The answer is 2.5e3.", "2.5", False),
        (r"The answer is $2\frac{1}{2}$ cups.", r"\frac{5}{2}", True),
        (r"The answer is $2\frac{1}{2}$ cups.", "1", False),
        ("So she needs 2 1/2 cups. The answer is 2 1/2.", "5/2", True),
        (r"Final Answer: $-\frac{3}{4}$", r"-\frac{3}{4}", True),
        (r"Final Answer: $-\frac{3}{4}$", "-3", False),
        (r"Final Answer: $-\frac{3}{4}$", r"\frac{3}{4}", False),
        (r"The final answer is $-\dfrac{7}{2}$.", "-3.5", True),
        (r"Simplifying, we get $\frac{3}{4}$.", "3/4", True),
        (r"Simplifying, we get $\frac{3}{4}$.", "3", False),
        (r"Hence the ratio is $\frac{6}{8} = \frac{3}{4}$.", "0.75", True),
        (r"Hence the ratio is $-\frac{3}{4}$.", r"-\frac{3}{4}", True),
        (r"Hence the ratio is $-\frac{3}{4}$.", "-3", False),
        (r"We find $x = \sqrt{5}$.", r"\sqrt{5}", True),
        (r"We find $x = \sqrt{5}$.", "5", False),
        (r"\[ x = \frac{5}{2} \]", "2.5", True),
    ],
    "lists": [
        ("The answer is 3,4", "3,4", True),
        ("The answer is 3,4", "3", False),
        ("The answer is 3,4", "4", False),
        ("The answer is 3, 4.", "3,4", True),
        ("The answer is 3, 4.", "3", False),
        ("The answer is 3 and 4.", "3, 4", True),
        ("The answer is 3 and 4.", "3", False),
        ("The answer is 3 and 4.", "4", False),
        ("The answer is -2, 1", "-2,1", True),
        ("The answer is -2, 1", "1", False),
        ("The answer is 1, 2, and 3.", "1,2,3", True),
        ("The answer is 1, 2, and 3.", "3", False),
        ("Answer: 2; 5", "2, 5", True),
        ("Answer: 2; 5", "5", False),
        ("The answer is 4, 3", "3,4", True),  # a set: the order does not matter
        ("The answer is 1,000, 2,000.", "1000, 2000", True),
        ("The answer is 5, since 2 + 3 = 5.", "5", True),
        (r"The answer is \frac{1}{2} and \frac{1}{3}.", r"\frac{1}{2}, \frac{1}{3}", True),
        (r"The answer is \frac{1}{2} and \frac{1}{3}.", r"\frac{1}{2}", False),
        ("The answer is 3,5", "3.5", False),  # a list in English; math-verify reads a decimal comma
    ],
    "dollar amounts": [
        (r"She pays $\$12.50$ in total.", "12.5", True),
        (r"She pays $\$12.50$ in total.", "12", False),
        (r"The total is \$1,250.", "1250", True),
        (r"The total is \$1,250.", "250", False),
        ("Answer: $18", "18", True),
        ("Janet makes 16 - 3 - 4 = 9 eggs, 9 * $2 = $18 a day.\n#### 18", "18", True),
        ("Janet makes 16 - 3 - 4 = 9 eggs, 9 * $2 = $18 a day.\n#### 18", "9", False),
        (r"The answer is $\$7$.", "7", True),
        ("The answer is $12.50 and the tip is $3.", "12.5", True),
        ("The answer is $12.50 and the tip is $3.", "3", False),
        ("The answer is $12.50 and the tip is $3.", "12", False),
        ("It costs $5 and $7 in all, so the answer is $12.", "12", True),
        ("It costs $5 and $7 in all, so the answer is $12.", "7", False),
        ("He pays $20 for the shirt and $15 for the hat, so $35 in total.", "35", True),
        ("He pays $20 for the shirt and $15 for the hat, so $35 in total.", "15", False),
        ("She earns $8 per hour, so in 5 hours she earns $40.", "40", True),
        ("She earns $8 per hour, so in 5 hours she earns $40.", "8", False),
        ("The ticket costs $4.50, and 3 tickets cost $13.50.", "13.5", True),
        ("The ticket costs $4.50, and 3 tickets cost $13.50.", "4.5", False),
        ("$2 + $3 = $5", "5", True),
        ("#### $1,250", "1250", True),
        ("The answer is $1,250.", "1250", True),
        ("The answer is $1,250.", "250", False),
        (r"The answer is $\$12.50$ and the tip is $\$3$.", "12.5", True),
        (r"The answer is $2xy$.", "2xy", True),
        (r"The answer is $12 + 3 = 15$.", "15", True),
        ("Each book is 3 dollars, so the total is 3 * 4 = 12 dollars.", "12", True),
        ("The total is €45.", "45", True),
        ("The total is £7.25 after the discount.", "7.25", True),
    ],
    "units": [
        ("The area is 12 cm^2.", "12", True),
        ("The area is 12 cm^2.", "2", False),
        (r"The area is $12\text{ cm}^2$.", "12", True),
        (r"The area is $12\text{ cm}^2$.", "2", False),
        ("The volume is 8 m^3, so the answer is 8 m^3.", "8", True),
        ("The volume is 8 m^3, so the answer is 8 m^3.", "3", False),
        ("He walks 15 km per day. The answer is 15 km.", "15", True),
        ("The rope is 15 m long.", "15", True),
        ("The rope is 15 m long.", "1", False),
        ("The speed is 60 km/h.", "60", True),
        ("The speed is 60 km/h.", "1", False),
        (r"The answer is $\boxed{125\textnormal{ miles}}$.", "125", True),  # math-verify's tests
        (
            r"$$\frac{1}{2}\times 3 \times 10 = \boxed{15\mbox{ cm}^2}.$$",
            r"15\mbox{ cm}^2",
            True,
        ),  # math-verify's tests
        (r"$$\frac{1}{2}\times 3 \times 10 = \boxed{15\mbox{ cm}^2}.$$", "3", False),
        (r"$\frac{1}{3} \text{meters}$", "1/3", True),  # math-verify's tests
        ("The tank holds 2.5 L.", "2.5", True),
        ("It takes 45 minutes.", "45", True),
        ("It takes 45 minutes.", "4", False),
        ("The answer is 8 m^3.", "8", True),
        ("The answer is 8 m^3.", "3", False),
        (r"The answer is $20\text{ ft}^2$.", "20", True),
        (r"The answer is $20\text{ ft}^2$.", "2", False),
    ],
    "percentages": [
        ("The answer is 50%.", "50", True),
        ("The answer is 50%.", "0.5", True),
        ("The answer is 50%.", "5", False),
        ("28 percent of the votes", r"28\%", True),  # math-verify's tests
        ("28 pct", r"28\%", True),  # math-verify's tests
        (r"$28$ %", r"28\%", True),  # math-verify's tests
        (r"$\boxed{28}$ pct", r"28\%", True),  # math-verify's tests
        (r"a total loss of $\boxed{28\%}$.", r"28\%", True),  # math-verify's tests
        (r"a total loss of $\boxed{28\%}$.", r"72\%", False),
        ("The discount is 12.5%.", "12.5", True),
        ("The discount is 12.5%.", "12", False),
        (r"The answer is $\boxed{20\%}$.", "20", True),
        (r"The answer is $\boxed{20\%}$.", "2", False),
    ],
    "degrees": [
        (r"Hence, the angle between the lines is $\boxed{90^\circ}.$", r"90^\circ", True),  # math-verify's tests
        (r"\angle BAC = 50^\circ+40^\circ = \boxed{90^\circ}", "90", True),  # math-verify's tests
        (r"The angle is $\boxed{45^{\circ}}$.", "45", True),
        (r"The angle is $\boxed{45^{\circ}}$.", "4", False),
        ("The angle is 120 degrees.", "120", True),
        ("The angle is 120 degrees.", "12", False),
        ("Each interior angle is 108°.", "108", True),
        ("Each interior angle is 108°.", "10", False),
        (r"The answer is 60^\circ.", "60", True),
        (r"The answer is 60^\circ.", "6", False),
        (r"The angle is $\boxed{\frac{\pi}{3}}$.", r"\frac{\pi}{3}", True),
    ],
    "intervals, tuples, sets": [
        ("The answer is (1, 2]", "(1,2]", True),
        ("The answer is (1, 2]", "2", False),
        ("The answer is (1, 2]", "[1,2]", False),
        ("The answer is [1, 2)", "[1,2)", True),
        ("The answer is (1, -2).", "(1,-2)", True),
        ("The answer is (1, -2).", "-2", False),
        (r"$\boxed{[-4, 0]}$", "[-4,0]", True),  # math-verify's tests
        (r"the final answer is \((-6, 10)\). I hope it is correct.", "(-6,10)", True),  # math-verify's tests
        (r"the final answer is \((-6, 10)\). I hope it is correct.", "[-6,10]", False),
        (r"$x \in \boxed{(2,12) \cup (12,102)}$", r"(2, 12) \cup (12, 102)", True),  # math-verify's tests
        (r"$(p,q,r) = \boxed{(6,31,-1)}.$", "(6,31,-1)", True),  # math-verify's tests
        (r"$(p,q,r) = \boxed{(6,31,-1)}.$", "(6,31,1)", False),
        (r"the answer is $\boxed{\{1\pm\sqrt{5},-2\}}.$", r"\{1\pm\sqrt{5},-2\}", True),  # math-verify's tests
        (r"the only integer roots are $\boxed{-2,1}.$", "-2,1", True),  # math-verify's tests
        (r"the only integer roots are $\boxed{-2,1}.$", "-2", False),
        (r"The solution set is $\boxed{(-\infty, 3)}$.", r"(-\infty,3)", True),
        (r"The solution set is $\boxed{(-\infty, 3)}$.", r"(-\infty,3]", False),
        (
            r"The polar coordinates are $\boxed{\left( 3, \frac{\pi}{2} \right)}.$",
            r"(3, \frac{\pi}{2})",
            True,
        ),  # math-verify's tests
        (r"$\boxed{(3,1)}$", "(1,3)", False),
    ],
    "matrices": [
        (r"The answer is $\begin{pmatrix} 1 \\ 2 \end{pmatrix}$.", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", True),
        (r"The answer is $\begin{pmatrix} 1 \\ 2 \end{pmatrix}$.", r"\begin{pmatrix} 2 \\ 1 \end{pmatrix}", False),
        (r"The answer is \begin{pmatrix} 1 \\ 2 \end{pmatrix}.", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", True),
        (r"The answer is \begin{pmatrix} 1 \\ 2 \end{pmatrix}.", "1", False),
        (
            r"$\boxed{\begin{pmatrix} 0 & 3 \\ 0 & -1 \end{pmatrix}}$",
            r"\begin{pmatrix} 0 & 3 \\ 0 & -1 \end{pmatrix}",
            True,
        ),  # math-verify's tests
        (
            r"$\boxed{\begin{pmatrix} 0 & 3 \\ 0 & -1 \end{pmatrix}}$",
            r"\begin{pmatrix} 0 & 3 \\ 0 & 1 \end{pmatrix}",
            False,
        ),
        (r"$\boxed{\begin{pmatrix} 2/4 \\ 3 \end{pmatrix}}$", r"\begin{pmatrix} \frac{1}{2} \\ 3 \end{pmatrix}", True),
        (
            r"$\boxed{\begin{bmatrix} 1 & 0 \\ 0 & 1 \end{bmatrix}}$",
            r"\begin{pmatrix} 1 & 0 \\ 0 & 1 \end{pmatrix}",
            True,
        ),
        (r"$\boxed{\begin{pmatrix} 1 & 0 \\ 0 & 1 \end{pmatrix}}$", "1", False),
        (r"The determinant is $\boxed{-2}$.", "-2", True),
    ],
    "fractions, slashes, decimals, ratios": [
        (r"$\boxed{\frac{10}{9}}$", "10/9", True),  # math-verify's tests
        (r"$\boxed{-\frac{10}{9}}$", "-10/9", True),  # math-verify's tests
        (r"$\frac13$", "1/3", True),  # math-verify's tests
        (r"$\frac3{3}$", "1", True),  # math-verify's tests
        (r"$\cfrac{1}{3}$", "1/3", True),  # math-verify's tests
        (r"$\tfrac{1}{3}$", "1/3", True),  # math-verify's tests
        (r"Therefore $\boxed{\frac94\pi}$.", r"\frac{9}{4}\pi", True),  # math-verify's tests
        ("3/2", "1.5", True),  # simple-evals' equality examples
        ("The answer is 0.333", "1/3", False),  # rounded: not the exact value
        ("The answer is 0.3333333333", "1/3", True),  # equal to math-verify's 6 decimals
        (r"The answer is $\frac{2}{3}$.", "0.67", False),
        ("The answer is 7/2.", "3.5", True),
        ("The answer is 7/2.", "7", False),
        ("The answer is 3.5", r"\frac{7}{2}", True),
        (r"The answer is $\frac{22}{7}$.", r"\pi", False),
        ("The ratio is 4:3.", "4:3", True),
        ("The ratio is 4:3.", "4", False),
        ("The meeting starts at 3:45.", "3", False),
    ],
    "thousands separators": [
        ("The answer is 1,000,000.", "1000000", True),
        ("The answer is 1,000,000.", "1", False),
        ("The answer is 1.000.000", "1000000", True),  # de
        ("The answer is 1.000.000", "1", False),
        ("The answer is 1 000 000", "1000000", True),  # fr/SI, regular spaces
        ("The answer is 1\u202f000\u202f000", "1000000", True),  # fr, narrow no-break spaces
        ("The answer is 1\u202f000\u202f000", "1", False),
        ("The answer is 1\u00a0000", "1000", True),  # no-break space
        ("The answer is 1'000'000", "1000000", True),  # ch
        ("The answer is 1'000'000", "1", False),
        ("The answer is 10,00,000", "1000000", True),  # in (lakh)
        ("The answer is 10,00,000", "10", False),
        ("The answer is 1.234,5", "1234.5", True),  # de, decimal comma
        ("The answer is 1.234,5", "1.234", False),
        ("The answer is 1 234,5", "1234.5", True),  # fr, decimal comma
        ("The answer is 1 234,5", "1234", False),
        ("The answer is 12 345", "12345", True),
        (r"is $\boxed{11,\! 111,\! 111,\! 100}$", "11111111100", True),  # math-verify's tests
        (r"is $\boxed{32,\! 349}$", "32349", True),  # math-verify's tests
        (r"is $\boxed{32, 349}$", "32349", False),  # math-verify's tests: a set of two numbers
        (r"Therefore, $\boxed{14{,}916}$ is our answer.", "14916", True),  # math-verify's tests
        ("The population is 7,425,000.", "7425000", True),  # math-verify's tests
        ("It is 1,000.99", "1000.99", True),  # math-verify's tests
    ],
    "negative numbers, .5, scientific notation": [
        ("The answer is 1e999999.", "1", False),  # an exponent too long to expand is not dropped
        ("The temperature drops to −5 degrees. The answer is −5.", "-5", True),
        ("The temperature drops to −5 degrees. The answer is −5.", "5", False),
        ("x = −12", "-12", True),
        ("x = −12", "12", False),
        ("The probability is .5", "0.5", True),
        ("The probability is .5", "5", False),
        ("The answer is .25", "1/4", True),
        ("The answer is .25", "25", False),
        ("The answer is 3.2e-2.", "0.032", True),
        ("The answer is -3.", "-3", True),
        ("The answer is -3.", "3", False),
        ("The answer is \u22123.", "-3", True),
        (r"$\boxed{-0.5}$", r"-\frac{1}{2}", True),
        (r"$\boxed{-0.5}$", "0.5", False),
        ("The temperature is -12 degrees.", "-12", True),
        ("The temperature is -12 degrees.", "12", False),
        (r"The answer is $-(-4)$.", "4", True),
        ("The slope is \uff0d2.", "-2", True),
        ("The slope is \uff0d2.", "2", False),
        (r"So $y = -\sqrt{3}$.", r"-\sqrt{3}", True),
        (r"So $y = -\sqrt{3}$.", r"\sqrt{3}", False),
    ],
    "restating the question": [
        ("The answer to 3 + 5 is 8.", "8", True),
        ("The answer to 3 + 5 is 7.", "8", False),
        ("The answer to 12 x 4 is 48.", "48", True),
        ("The answer to 12 x 4 is 48.", "12", False),
        ("The answer to the question is 42.", "42", True),
        ("What is 15% of 80? 15% of 80 is 12.", "12", True),
        ("What is 15% of 80? 15% of 80 is 12.", "80", False),
        ("How many apples are left? She started with 10 apples and ate 3, so 7 apples are left.", "7", True),
        ("How many apples are left? She started with 10 apples and ate 3, so 7 apples are left.", "10", False),
        (r"We need $f(2)$. Since $f(x) = x^2 + 1$, $f(2) = \boxed{5}$.", "5", True),
        (r"We need $f(2)$. Since $f(x) = x^2 + 1$, $f(2) = \boxed{5}$.", "2", False),
        ("Final Answer: The largest $n$ is 34.", "34", True),  # math-verify's tests
        ("The answer for part (b) is 6.", "6", True),
        ("The answer for part (b) is 6.", "2", False),
    ],
    "plain numbers and phrases": [
        ("The answer is 17. Check: 3 + 14 = 17.", "17", True),
        ("The answer is 17.", "71", False),
        ("Answer: 42", "42", True),
        ("answer: **1,000** apples", "1000", True),
        ("answer: **1,000** apples", "1000000", False),
        ("Total: 1,000,000", "1000", False),
        ("It comes to 42.0", "42", True),
        ("The answer is 0.5", "1/2", True),
        ("The answer is 0.5", "1/3", False),
        ("The answer is -7.", "-7", True),
        ("The answer is -7.", "7", False),
        ("We get 3 - 5 = -2 and then 8.", "8", True),
        ("She has 5 apples and buys 7 more, so she has 12 apples.", "12", True),
        ("She has 5 apples and buys 7 more, so she has 12 apples.", "7", False),
        ("So there are 60% left.", "60", True),
        ("The answer is 1/2", "0.5", True),
        ("**Final Answer**\n\\boxed{9}", "9", True),
        (r"Thus $x = \boxed{7}$.", "7", True),
        (r"So $\boxed{x = 5}$.", "5", True),
        (r"So $\boxed{x = 5}$.", "-5", False),
        ("The answer is: 7", "7", True),
        ("The answer is: 7", "1", False),
        (r"The answer is \(\frac{3}{4}\).", "0.75", True),
        (r"The answer is \(\frac{3}{4}\).", "4", False),
        (r"The answer is $−\frac{1}{2}$.", "-1/2", True),
        (r"The answer is $−\frac{1}{2}$.", "1/2", False),
        (r"The answer is −\frac{3}{4}.", r"-\frac{3}{4}", True),
        (r"The answer is 4\pi.", r"4\pi", True),
        (r"The answer is 4\pi.", "4", False),
        ("The answer is 2 1/2.", "1", False),
        ("The answer is 3 1/3", "10/3", True),
        ("The answer is 1e6.", "1000000", True),
        ("The answer is 1e6.", "6", False),
        (r"Half of the 10 cookies, $\frac{1}{2} \cdot 10 = 5$, is 5 cookies.", "5", True),
        (r"$\boxed{2\sqrt{3}}$", r"2\sqrt{2}", False),
        ("The answer is 3.50", "3.5", True),
        ("The angle is 30°.", "30", True),
        ("The angle is 30°.", "3", False),
        ("The answer is 0.75", "3/4", True),
        (r"The answer is $\frac{3}{4}$ of the pie.", "4", False),
        ("There are 1,024 ways.", "1024", True),
        ("There are 1,024 ways.", "24", False),
    ],
    # A response that never states a final answer: cut off at --max-new-tokens,
    # trying the answer and rejecting it, restating the question's numbers,
    # looping, hedging. The last number is the gold answer in each; nothing
    # here is an answer (math:flexible passes them unless cut off: see IMPLICIT).
    "no final answer": [
        ("First, 12 * 3 = 36. Then we add 6 to get 42 and then we still need to subtract the", "42", False),
        ("Let me try 42: 42 * 2 = 84, which is more than 80, so it cannot be 42.", "42", False),
        ("Maybe the answer is 42? No: 42 * 2 = 84, which is more than 80, so it is not 42.", "42", False),
        ("There are 3 boxes with 5 apples in each box.", "5", False),
        ("so it is 7, so it is 7, so it is 7, so it is 7, so it is 7, so it is 7, so it is", "7", False),
        ("I am not sure. It could be 12 or it could be 15.", "15", False),
        ("We have 4 rows of 6 chairs, and 24 people are coming.", "24", False),
        ("Subtracting, 50 - 8 = 42, and now dividing both sides by", "42", False),
        ("It is either 9 or 10; I cannot tell which.", "10", False),
        ("The question asks how many of the 30 students like tea.", "30", False),
        ("1 2 3 4 5 6 7 8 9 10", "10", False),  # an enumeration is not a lone answer
        ("42 43 44", "44", False),
        ("The answer is 5 or 6.", "6", False),  # a hedge is not an answer: read as the set {5, 6}
        ("The answer is 5 or 6.", "5", False),
        ("The answer is not 7.", "7", False),  # nor a negation
        ("1.000.000.000.000.000" * 12, "1", False),  # a page of digits is no lone answer
    ],
    # The forms issue 35 named (a base subscript, \\fbox, \\degree, spaced
    # thousands in a box, "million"), written with the rules that read them.
    "bases, \\fbox, \\degree, spaced thousands, scale words": [
        ("The answer is $\\boxed{204_6}$.", "204_5", False),
        ("The answer is $\\boxed{204_5}$.", "204_5", True),
        ("$\\boxed{2345_{6}}$", "2345_6", True),
        ("$\\boxed{2345_{6}}$", "2345", False),
        ("\\fbox{12}", "12", True),
        ("\\fbox{12}", "21", False),
        ("The angle is $\\boxed{30\\degree}$.", "30", True),
        ("$\\boxed{1 000}$", "1000", True),
        ("$\\boxed{1 000}$", "1", False),
        ("$\\boxed{1\\,000}$", "1000", True),
        ("The answer is $2.5\\text{ million}$.", "2500000", True),
        ("The answer is $2.5\\text{ million}$.", "2.5", False),
        ("The answer is 2.5 million.", "2500000", True),
        ("$\\log_2 8 = \\boxed{3}$", "3", True),
        ("$\\boxed{11_2}$", "3", False),
        ("$\\boxed{1011_2}$", "1011_2", True),
        ("$\\boxed{1011_2}$", "1101_2", False),
        ("The answer is \\fbox{7}.", "7", True),
        ("The answer is $\\boxed{3\\text{ billion}}$.", "3000000000", True),
        ("The answer is $\\boxed{3\\text{ billion}}$.", "3", False),
        ("The angle is $\\boxed{60\\degree}$.", "60", True),
        ("The angle is $\\boxed{60\\degree}$.", "6", False),
        ("$\\boxed{12\\,345}$", "12345", True),
        ("$\\boxed{12 345}$", "12345", True),
        ("$\\boxed{12 345}$", "345", False),
    ],
    # Test facts of other graders (hendrycks/math's is_equiv, PRM800K's grader,
    # lighteval's normalizer, verl's gsm8k and DAPO rewards, simple-evals'
    # "Answer:" pattern, NeMo-Skills, OlympiadBench, SkyRL), restated in this
    # table's form after the rules above were written, and measured as they
    # came (README): 39 of 41 agreed. The two: \\mbox{5 cm} was not read (a
    # rule reads a number inside \\text or \\mbox now), and 20\\% passed
    # against 0.2, graded wrong at first, regraded to this table's convention
    # (a percent is its number and its fraction: 50% is 0.5 above).
    "other graders' tests, added after the rules": [
        (r"So the answer is $\boxed{\frac12}$.", r"\frac{1}{2}", True),  # hendrycks: \frac12
        (r"So the answer is $\boxed{\frac12}$.", r"\frac{1}{3}", False),
        (r"$\boxed{\sqrt3}$", r"\sqrt{3}", True),  # hendrycks: \sqrt3
        (r"$\boxed{\sqrt3}$", "3", False),
        (r"The answer is $\boxed{x=5}$.", "5", True),  # hendrycks: "x = 5" -> 5
        (r"$\boxed{\left( 3, \frac{\pi}{2} \right)}$", r"\left( 3, \frac{\pi}{2} \right)", True),
        (r"$\boxed{\left( 3, \frac{\pi}{2} \right)}$", r"\left( 3, \pi \right)", False),
        (r"The answer is $\boxed{10\text{ inches}}$.", "10", True),  # hendrycks: units dropped
        (r"The answer is $\boxed{\$18.90}$.", "18.90", True),  # hendrycks: \$ dropped
        (r"The answer is $\boxed{\$18.90}$.", "18.09", False),
        (r"$\boxed{.5}$", "0.5", True),  # hendrycks: leading zero
        (r"$\boxed{\dfrac{3}{5}}$", r"\frac{3}{5}", True),
        (r"$\boxed{45^{\circ}}$", "45", True),
        (r"$\boxed{\mbox{5 cm}}$", "5", True),  # lighteval: \mbox
        (r"$\boxed{10^{6}}$", "1000000", True),  # PRM800K
        (r"$\boxed{10^{6}}$", "106", False),
        (r"$\boxed{(-\infty, 3]}$", r"(-\infty,3]", True),  # PRM800K intervals
        (r"$\boxed{(-\infty, 3]}$", r"(-\infty,3)", False),
        (r"$\boxed{2\pi}$", r"2 \pi", True),
        (r"$\boxed{5,\!040}$", "5040", True),  # hendrycks: \! thousands
        (r"$\boxed{5,\!040}$", "504", False),
        (
            "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48 + 24 = 72 clips.\n#### 72",
            "72",
            True,
        ),  # verl gsm8k strict
        ("Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48 + 24 = 72 clips.\n#### 72", "24", False),
        ("#### 1,200", "1200", True),
        ("The total is 72 clips.\n\nAnswer: 72", "72", True),  # simple-evals / DAPO "Answer:"
        ("Answer: $\\frac{7}{2}$", "3.5", True),
        ("Answer: 3.4", "3.5", False),
        (r"The final answer is $\boxed{3 \times 10^{8}}$.", "300000000", True),  # OlympiadBench
        (r"The final answer is $\boxed{3 \times 10^{8}}$.", "3", False),
        (r"The final answer is $\boxed{2, -2}$.", "-2,2", True),  # OlympiadBench multiple answers
        (r"The final answer is $\boxed{2, -2}$.", "2", False),
        (r"<think>maybe 5</think> The answer is $\boxed{6}$.", "6", True),  # SkyRL / R1-style
        (r"<think>maybe 5</think> The answer is $\boxed{6}$.", "5", False),
        (r"Final Answer: The final answer is $12$. I hope it is correct.", "12", True),  # lighteval minerva
        (r"Final Answer: The final answer is $12$. I hope it is correct.", "21", False),
        (r"$\boxed{\text{(C)}}$", r"\text{(C)}", True),
        (r"$\boxed{1\frac{1}{2}}$", r"\frac{3}{2}", True),  # NeMo-Skills mixed numbers
        (r"$\boxed{1\frac{1}{2}}$", r"\frac{1}{2}", False),
        (r"$\boxed{\frac{\sqrt{3}}{3}}$", r"\frac{1}{\sqrt{3}}", True),
        (r"$\boxed{0.333}$", r"\frac{1}{3}", False),  # 3 decimals is not 1/3
        (r"$\boxed{20\%}$", "0.2", True),  # a percent is its number and its fraction (as the table grades 50%)
    ],
    "nothing to extract": [
        ("I do not know.", "42", False),
        ("", "0", False),
    ],
}

TABLE = [row for rows in CLASSES.values() for row in rows]

# Responses that state no final answer explicitly (no \\boxed{}, answer phrase
# or "####" line, and more than math alone): the hand grade above reads
# their last number as a reader would; the default `math` reward gives them
# nothing, `math:flexible` reads them (README, "What counts as a correct math answer").
IMPLICIT = frozenset(
    {
        "Simplifying, we get $\\frac{3}{4}$.",
        "Hence the ratio is $\\frac{6}{8} = \\frac{3}{4}$.",
        "Hence the ratio is $-\\frac{3}{4}$.",
        "We find $x = \\sqrt{5}$.",
        "She pays $\\$12.50$ in total.",
        "The total is \\$1,250.",
        "He pays $20 for the shirt and $15 for the hat, so $35 in total.",
        "She earns $8 per hour, so in 5 hours she earns $40.",
        "The ticket costs $4.50, and 3 tickets cost $13.50.",
        "Each book is 3 dollars, so the total is 3 * 4 = 12 dollars.",
        "The total is €45.",
        "The total is £7.25 after the discount.",
        "The area is 12 cm^2.",
        "The area is $12\\text{ cm}^2$.",
        "The rope is 15 m long.",
        "The speed is 60 km/h.",
        "The tank holds 2.5 L.",
        "It takes 45 minutes.",
        "28 percent of the votes",
        "28 pct",
        "The discount is 12.5%.",
        "The angle is 120 degrees.",
        "Each interior angle is 108°.",
        "The ratio is 4:3.",
        "The population is 7,425,000.",
        "It is 1,000.99",
        "The probability is .5",
        "The temperature is -12 degrees.",
        "The slope is －2.",
        "So $y = -\\sqrt{3}$.",
        "What is 15% of 80? 15% of 80 is 12.",
        "How many apples are left? She started with 10 apples and ate 3, so 7 apples are left.",
        "It comes to 42.0",
        "We get 3 - 5 = -2 and then 8.",
        "She has 5 apples and buys 7 more, so she has 12 apples.",
        "So there are 60% left.",
        "Half of the 10 cookies, $\\frac{1}{2} \\cdot 10 = 5$, is 5 cookies.",
        "The angle is 30°.",
        "There are 1,024 ways.",
    }
)
