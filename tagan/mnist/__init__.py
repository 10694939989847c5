"""The MNIST paper reproductions: the MNIST CGAN (Mirza & Osindero) and the DCGAN feature protocol (Radford et al.), their judge classifier and evaluation."""
