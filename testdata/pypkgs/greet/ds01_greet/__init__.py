"""A console script for ds01's package tests."""

from ds01_words import GREETING


def main():
    print(GREETING)
